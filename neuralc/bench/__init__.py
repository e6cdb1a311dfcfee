"""``neuralc bench``: how fast a model is here, on each target, against what users run today.

One run times every (target or peer, batch, precision) cell in its own process with a
timeout, after checking its output against the reference interpreter; with ``--kernels`` it
also times each fused kernel of the cpu target against the machine's measured ceilings
(roofline), with ``-O0`` beside it. The pieces, one job per module:

- ``config``, ``options``: the request and its flags; ``plan``: the cells and the shared data
  (weights, inputs, the oracle's outputs); ``isolate``: one cell in a process;
  ``worker``: what runs in that process; ``context``: the data a cell loads;
  ``targets``, ``peers``: how each target and peer is prepared and called;
  ``timing``, ``check``: the timing loop and the output check;
  ``kernels``, ``flops``, ``ceilings``: per-kernel times, bytes, FLOPs, and the ceilings;
  ``run``: the whole run and the result file; ``table``, ``plot``, ``progress``: the output;
  ``machine``: the machine and versions; ``command``: the CLI subcommand.

This package sits above the backends and the API (it runs them) and below the CLI.
"""
