"""Compile time of every example, per stage: parse, macro expansion, lowering, each -O pipeline.

Run:
    .venv/bin/python benchmarks/compile_time.py --repeat 20 --out benchmarks/results/compile_time.md

Each stage is timed over ``--repeat`` runs after one warm-up; the table shows the median and the
minimum in milliseconds. It measures the real compiler on the bundled examples, in-process (the
Python start-up and imports, about 0.3 s, are not included; `--cold` times one whole
`neuralc check` process per example instead).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuralc.diagnostics import DiagnosticEngine  # noqa: E402
from neuralc.frontend.hparams import HParams  # noqa: E402
from neuralc.frontend.lower import lower  # noqa: E402
from neuralc.frontend.macros import expand  # noqa: E402
from neuralc.frontend.parser import parse  # noqa: E402
from neuralc.passes.base import PassContext  # noqa: E402
from neuralc.passes.manager import PassManager  # noqa: E402
from neuralc.passes.pipelines import tensor_pipeline  # noqa: E402
from neuralc.passes.registry import parse_pipeline  # noqa: E402


def _time(fn, repeat: int) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), min(samples)


def stages(path: Path, repeat: int) -> dict[str, tuple[float, float]]:
    text = path.read_text()
    name = str(path)
    out: dict[str, tuple[float, float]] = {}
    out["parse"] = _time(lambda: parse(text, name), repeat)
    parsed = parse(text, name)
    out["expand"] = _time(lambda: expand(parsed), repeat)
    expanded = expand(parsed)
    net = expanded.networks[0]
    out["lower"] = _time(lambda: lower(expanded, net, DiagnosticEngine(), HParams()), repeat)
    for level in range(4):
        def run(level: int = level) -> None:
            module, _ = lower(expanded, net, DiagnosticEngine(), HParams())
            passes = parse_pipeline(",".join(tensor_pipeline(level)))
            PassManager(passes).run(module, PassContext())
        total = _time(run, repeat)
        lower_only = out["lower"]
        out[f"-O{level}"] = (total[0] - lower_only[0], total[1] - lower_only[1])
    return out


def model_path(name: str) -> Path:
    """A model named as an example (``mnist_cnn``) or given as a path (``models/my.nr``)."""
    p = Path(name)
    if p.suffix == ".nr" or p.exists():
        if not p.is_file():
            raise SystemExit(f"error: no such model file: {name}")
        return p
    example = ROOT / "examples" / f"{name}.nr"
    if not example.is_file():
        known = ", ".join(sorted(q.stem for q in (ROOT / "examples").glob("*.nr")))
        raise SystemExit(f"error: '{name}' is neither a .nr file nor an example ({known})")
    return example


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cold", action="store_true", help="also time a whole `neuralc check` process")
    ap.add_argument("models", nargs="*", metavar="MODEL",
                    help="example names or .nr paths (default: every example)")
    args = ap.parse_args()
    examples = ([model_path(m) for m in args.models] if args.models
                else sorted((ROOT / "examples").glob("*.nr")))
    cols = ["parse", "expand", "lower", "-O0", "-O1", "-O2", "-O3"]
    lines = [
        "# Compile time per example (ms, median / min)",
        "",
        f"Command: `.venv/bin/python benchmarks/compile_time.py --repeat {args.repeat}"
        + (" --cold" if args.cold else "") + "`",
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}",
        "The -O columns are the whole pass pipeline of that level alone (shape inference,",
        "lowering to tensor IR, cleanup, folding, fusion, memory planning), without parsing.",
        "",
        "| example | " + " | ".join(cols) + " | total (-O2) |"
        + (" cold process |" if args.cold else ""),
        "|---|" + "---|" * (len(cols) + 1) + ("---|" if args.cold else ""),
    ]
    for path in examples:
        st = stages(path, args.repeat)
        total = st["parse"][0] + st["expand"][0] + st["lower"][0] + st["-O2"][0]
        row = f"| {path.stem} | " + " | ".join(f"{st[c][0]:.2f} / {st[c][1]:.2f}" for c in cols)
        row += f" | {total:.1f} |"
        if args.cold:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "neuralc.cli", "check", str(path)],
                           capture_output=True, check=True, cwd=ROOT)
            row += f" {(time.perf_counter() - t0) * 1e3:.0f} |"
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
