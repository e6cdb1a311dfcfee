"""The flags of ``neuralc bench`` and the :class:`BenchConfig` they make.

Kept here so the CLI module only wires the subcommand in; lists (``--targets cpu,onnx``,
``--batch 1,32``) are checked by :mod:`neuralc.bench.config` with one-line usage errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralc.bench.config import (
    DEFAULT_MIN_TIME,
    DEFAULT_TIMEOUT,
    PEERS,
    PROFILED_TARGETS,
    TARGETS,
    BenchConfig,
    dim_sizes,
    int_list,
    name_list,
    precision_list,
    usable_cpus,
    usage_error,
)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def _count(minimum: int):
    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {v}")
        return v

    return convert


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of ``neuralc bench`` (``--network``/``--hparam`` come from the CLI)."""
    p.add_argument("model", help="the .nr model file")
    p.add_argument("--targets", metavar="T,T",
                   help=f"neuralc targets to time ({', '.join(TARGETS)}; default: every one "
                   "that runs here; 'none' for none)")
    p.add_argument("--peers", metavar="P,P", default=",".join(PEERS),
                   help=f"peers on the same model and weights ({', '.join(PEERS)}; default: "
                   "all; 'none' for none)")
    p.add_argument("--batch", metavar="N,N", default="1", help="batch sizes (default 1)")
    p.add_argument("--dim", metavar="NAME=N", action="append", default=[],
                   help="size of a symbolic dim other than the batch (default 64)")
    p.add_argument("--precision", metavar="P,P", default="fp32",
                   help="precisions (fp32, fp16, bf16, mixed; default fp32)")
    p.add_argument("--threads", type=_count(1), default=None, metavar="N",
                   help=f"threads of the cpu target's pool, onnxruntime, torch and numpy "
                   f"(default: the {usable_cpus()} CPUs usable here)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--repeat", type=_count(1), default=None, metavar="N",
                      help="time exactly N single calls per cell")
    when.add_argument("--min-time", type=_positive_float, default=None, metavar="S",
                      help=f"time calls for at least S seconds per cell (default "
                      f"{DEFAULT_MIN_TIME:g})")
    p.add_argument("--warmup", type=_count(0), default=3, metavar="N",
                   help="untimed calls before timing (default 3)")
    p.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds a cell may take before it is killed (default "
                   f"{DEFAULT_TIMEOUT:g})")
    p.add_argument("--kernels", action="store_true",
                   help="time each fused kernel of the cpu target, with bytes, FLOPs and the "
                   "machine's ceilings, and -O0 beside it")
    p.add_argument("--kernel-repeat", type=_count(1), default=20, metavar="N",
                   help="inferences per kernel profile (default 20)")
    p.add_argument("--refresh-ceilings", action="store_true",
                   help="measure the FMA and copy ceilings again instead of the cached ones")
    p.add_argument("-O", dest="opt", type=int, default=2, choices=range(4),
                   metavar="{0,1,2,3}", help="optimisation level of neuralc's targets "
                   "(default 2)")
    p.add_argument("--weights", "-w", metavar="FILE", help="weights (.safetensors)")
    p.add_argument("--seed", type=_count(0), default=0, metavar="N",
                   help="seed of the initial weights and the inputs (default 0)")
    p.add_argument("--json", metavar="FILE", help="write the whole result (JSON)")
    p.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="FILE",
                   help="draw latency bars and the kernels' roofline (needs matplotlib)")


def _writable(path: str | None, flag: str) -> None:
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise usage_error(f"{flag} {path}: no folder {folder}")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Check every flag (one-line usage errors) and make the run's configuration."""
    from neuralc.bench.plan import default_targets

    if not Path(args.model).is_file():
        raise usage_error(f"no such file: {args.model}")
    targets = (default_targets() if args.targets is None
               else name_list(args.targets, TARGETS, "--targets"))
    peers = name_list(args.peers, PEERS, "--peers")
    if not targets and not peers:
        raise usage_error("nothing to time: give --targets or --peers")
    if args.kernels and not any(t in PROFILED_TARGETS for t in targets):
        raise usage_error("--kernels times the fused kernels of the cpu target; add cpu to "
                         "--targets")
    for flag in ("json", "markdown", "plot"):
        _writable(getattr(args, flag), f"--{flag}")
    if args.plot:
        from neuralc.bench.plot import require

        require()
    return BenchConfig(
        model=args.model, targets=targets, peers=peers,
        batches=int_list(args.batch, "--batch"), dims=dim_sizes(args.dim),
        precisions=precision_list(args.precision),
        threads=args.threads or usable_cpus(), repeat=args.repeat,
        min_time=args.min_time or DEFAULT_MIN_TIME, warmup=args.warmup,
        timeout=args.timeout, kernels=args.kernels, kernel_repeat=args.kernel_repeat,
        opt=args.opt, seed=args.seed, weights=args.weights, network=args.network,
        hparams=list(args.hparam), json=args.json, plot=args.plot, markdown=args.markdown,
        refresh_ceilings=args.refresh_ceilings)
