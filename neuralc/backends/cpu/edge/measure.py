"""The README's table of edge binaries: size (code, weights) and latency of every example's
standalone executable against the in-process cpu target, measured in one run.

    python -m neuralc.backends.cpu.edge.measure [--repeat N] [--batch B] [EXAMPLE.nr ...]

Inputs are seeded, at batch ``--batch`` and the model's nominal sizes of its other dims. For
each model: the host executable (dynamic against glibc) and the static aarch64 one are
built; the executable's ``--bench N`` median is compared with the median of N calls of
:class:`~neuralc.backends.cpu.runtime.CpuExecutable` (the same code, called from Python with
its input checks) on the same seeded inputs, after one warm-up each; a model slower than
0.1 s a run gets fewer runs (about 5 s of them, at least 3).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_MEDIAN = re.compile(r"median ([\d.e+-]+) ms")


def measure(path: Path, repeat: int, batch: int, work: Path) -> dict[str, object]:
    """Sizes and latencies of one example."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.backends.cpu.host import TargetSpec
    from neuralc.backends.cpu.runtime import CpuExecutable
    from neuralc.driver import compile_file
    from neuralc.runtime.samples import clamp_to_range, random_inputs, symbol_sizes
    from neuralc.runtime.weights import init_weights

    model = compile_file(path)
    weights = init_weights(model.module, seed=0)
    comp = compile_for_cpu(model)
    exe = build_edge(comp, model, weights, EdgeRequest("exe", work / path.stem, comp.spec))
    arm_spec = TargetSpec.aarch64()
    arm = build_edge(compile_for_cpu(model, spec=arm_spec), model, weights,
                     EdgeRequest("exe", work / f"{path.stem}-aarch64", arm_spec, static=True))
    sizes = symbol_sizes(model.module, batch, 8)
    nominal = model.module.attributes.get("dim_nominal") or {}
    sizes.update({s: clamp_to_range(model.module, s, int(v)) for s, v in nominal.items()
                  if s in sizes and s != "batch" and isinstance(v, int)})
    inputs = random_inputs(model.module, sizes, np.random.default_rng(0))
    files = []
    for k, x in enumerate(inputs):
        np.save(work / f"{path.stem}-in{k}.npy", x)
        files.append(str(work / f"{path.stem}-in{k}.npy"))
    in_process = CpuExecutable(comp, model, weights)
    t0 = time.perf_counter()
    in_process(inputs)
    # A slow model gets fewer runs (about 5 s each side), never fewer than 3.
    repeat = max(3, min(repeat, int(5.0 / max(time.perf_counter() - t0, 1e-6))))
    out = subprocess.run([str(exe.binary), *files, "--bench", str(repeat)], capture_output=True,
                         text=True, check=True).stdout
    found = _MEDIAN.search(out)
    if found is None:
        raise RuntimeError(f"{exe.binary} --bench printed {out!r}")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        in_process(inputs)
        times.append(time.perf_counter() - t0)
    shown = ", ".join(f"{s}={v}" for s, v in sizes.items() if s != "batch")
    return {"model": path.stem, "sizes": shown, "runs": repeat, "bytes": exe.file_bytes,
            "code": exe.code_bytes, "weights": exe.weights_bytes, "arm_bytes": arm.file_bytes,
            "arm_code": arm.code_bytes,
            "exe_ms": float(found.group(1)), "inproc_ms": 1e3 * statistics.median(times),
            "inproc_threads": int(getattr(in_process, "threads", 1))}


def _kib(n: object) -> str:
    return f"{int(n) / 1024:,.0f}"  # type: ignore[call-overload]


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| model (sizes) | x86-64 exe KiB (code, weights) | aarch64 static KiB (code) "
             "| runs | exe median ms | in-process median ms |", "|---|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['model']} ({r['sizes']})" if r["sizes"] else str(r["model"])
        lines.append(f"| {name} | {_kib(r['bytes'])} ({_kib(r['code'])}, "
                     f"{_kib(r['weights'])}) | {_kib(r['arm_bytes'])} ({_kib(r['arm_code'])}) "
                     f"| {r['runs']} | {r['exe_ms']:.3g} | {r['inproc_ms']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neuralc.backends.cpu.edge.measure",
                                description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", type=Path, help="default: examples/*.nr")
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args(argv)
    models = args.models or sorted(Path("examples").glob("*.nr"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="neuralc-measure-") as tmp:
        for path in models:
            rows.append(measure(path, args.repeat, args.batch, Path(tmp)))
            print(f"measured {path.stem}", file=sys.stderr)
    from neuralc.backends.cpu.host import TargetSpec

    host = TargetSpec.host()
    threads = sorted({int(r["inproc_threads"]) for r in rows})  # type: ignore[call-overload]
    print(f"<!-- python -m neuralc.backends.cpu.edge.measure --repeat {args.repeat} "
          f"--batch {args.batch}; {platform.machine()} {host.cpu}; in-process threads "
          f"{', '.join(map(str, threads))}; executable kernels on 1 thread -->")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
