"""CPU inference latency of neuralc's targets and the peers, per model: ``neuralc bench`` runs.

Run:
    .venv/bin/python benchmarks/runtime_cpu.py --out benchmarks/results/runtime_cpu.md
    .venv/bin/python benchmarks/runtime_cpu.py --models mnist_cnn,path/to/model.nr --batch 1,16 \
        -- --repeat 30 --kernels

For each model (an example's name, or a path to a ``.nr`` file) this runs, in its own process,

    neuralc bench MODEL --targets cpu,onnx --peers torch,torch-compile,onnxruntime --batch B

plus any flags after ``--``, and joins the Markdown tables each run writes (each with its full
command and the machine) into ``--out`` (default: standard output). Everything else, the
checks against the reference included, is ``neuralc bench``'s; see its ``-h``. The exit status
is the worst of the runs'.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["mnist_cnn", "resnet_small", "mobilenet_tiny", "transformer_classifier",
          "lstm_text_classifier", "unet_small"]


def model_path(name: str) -> str:
    """A path as given; an example's name (``resnet_small``) as its path from here, so the
    commands in the tables read ``examples/resnet_small.nr`` when run from the repository."""
    if name.endswith(".nr") or "/" in name:
        return name
    return os.path.relpath(ROOT / "examples" / f"{name}.nr")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help="example names or .nr paths, comma-separated")
    ap.add_argument("--batch", default="1,16", help="batch sizes (default 1,16)")
    ap.add_argument("--targets", default="cpu,onnx")
    ap.add_argument("--peers", default="torch,torch-compile,onnxruntime")
    ap.add_argument("--out", type=Path, help="write the joined Markdown here")
    args = ap.parse_args(own)
    parts = ["# CPU inference latency: neuralc's targets and the peers", "",
             f"Made by `.venv/bin/python benchmarks/runtime_cpu.py {shlex.join(argv)}`, which "
             "runs `neuralc bench` once per model; each table gives its exact command and "
             "machine.", ""]
    worst = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            md = Path(tmp) / f"{Path(name).stem}.md"
            cmd = [sys.executable, "-m", "neuralc.cli", "bench", model_path(name),
                   "--targets", args.targets, "--peers", args.peers, "--batch", args.batch,
                   "--markdown", str(md), *extra]
            print("$ neuralc " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
            code = subprocess.call(cmd, stdout=sys.stderr)
            worst = max(worst, code)
            if md.exists():
                parts += [f"## {Path(name).stem}", "", md.read_text()]
    text = "\n".join(parts)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
