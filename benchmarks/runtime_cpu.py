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
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The examples the cpu target's speed goal names.
MODELS = ["mlp", "mnist_cnn", "resnet_small", "mobilenet_tiny", "inception_block",
          "se_resnet_block", "lstm_text_classifier", "bigru_tagger", "transformer_classifier",
          "vit_tiny", "unet_small", "seq2seq_decoder"]


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
    ap.add_argument("--batch", default="1,32", help="batch sizes (default 1,32)")
    ap.add_argument("--targets", default="cpu,onnx")
    ap.add_argument("--peers", default="torch,torch-compile,onnxruntime")
    ap.add_argument("--out", type=Path, help="write the joined Markdown here")
    args = ap.parse_args(own)
    parts = ["# CPU inference latency: neuralc's targets and the peers", "",
             f"Made by `.venv/bin/python benchmarks/runtime_cpu.py {shlex.join(argv)}`, which "
             "runs `neuralc bench` once per model; each table gives its exact command and "
             "machine.", ""]
    before = os.getloadavg()
    worst = 0
    tables: list[str] = []
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            md = Path(tmp) / f"{Path(name).stem}.md"
            js = Path(tmp) / f"{Path(name).stem}.json"
            cmd = [sys.executable, "-m", "neuralc.cli", "bench", model_path(name),
                   "--targets", args.targets, "--peers", args.peers, "--batch", args.batch,
                   "--markdown", str(md), "--json", str(js), *extra]
            print("$ neuralc " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
            code = subprocess.call(cmd, stdout=sys.stderr)
            worst = max(worst, code)
            if md.exists():
                tables += [f"## {Path(name).stem}", "", md.read_text()]
            if js.exists():
                results[Path(name).stem] = json.loads(js.read_text())
    after = os.getloadavg()
    parts += [f"Load average (1, 5, 15 min) before the run: {_load(before)}; after: "
              f"{_load(after)} (nothing else ran).", ""]
    parts += summary(results, args.batch) + tables
    text = "\n".join(parts)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return worst


def _median(result: dict, runner: str, batch: int) -> float | None:
    for c in result.get("cells", []):
        if c["runner"] == runner and c["batch"] == batch and c["status"] == "ok":
            return float(c["latency_ms"]["median"])
    return None


def summary(results: dict[str, dict], batches: str) -> list[str]:
    """The cpu target against onnxruntime (the peer the goal names), one row per model, and
    the geometric mean of the speed-ups per batch size."""
    sizes = [int(b) for b in batches.split(",")]
    head = "| model | " + " | ".join(f"b{b}: cpu ms | onnxruntime ms | speed-up" for b in sizes)
    lines = ["## Summary: the cpu target against onnxruntime", "",
             "Median latency of each cell below; speed-up = onnxruntime / cpu (above 1: "
             "neuralc is faster).", "", head + " |",
             "|---|" + "---|---|---|" * len(sizes)]
    ratios: dict[int, list[float]] = {b: [] for b in sizes}
    for model, result in results.items():
        row = [model]
        for b in sizes:
            cpu, ort = _median(result, "cpu", b), _median(result, "onnxruntime", b)
            if cpu is None or ort is None:
                row += [_fmt(cpu), _fmt(ort), "-"]
                continue
            ratios[b].append(ort / cpu)
            row += [_fmt(cpu), _fmt(ort), f"{ort / cpu:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    geo = ["**geometric mean**"]
    for b in sizes:
        r = ratios[b]
        g = math.exp(sum(math.log(x) for x in r) / len(r)) if r else float("nan")
        geo += ["", "", f"**{g:.2f}x** ({sum(x >= 1 for x in r)} of {len(r)} at least 1x)"]
    lines += ["| " + " | ".join(geo) + " |", ""]
    return lines


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


def _fmt(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
