"""GPU check and benchmark of neuralc's cuda target, in one call of under 10 minutes.

Run on a machine with an NVIDIA GPU (TRITON_INTERPRET unset):

    .venv/bin/python benchmarks/gpu/bench_gpu.py --out benchmarks/results/gpu.md
    .venv/bin/python benchmarks/gpu/bench_gpu.py --models mnist_cnn,vit_tiny --budget 300
    .venv/bin/python benchmarks/gpu/bench_gpu.py --dry-run      # no GPU: parse, build, plan

Phases, in order (each records what it skipped and why; the Markdown is written even when a
phase fails):

1. the card: name, compute capability, versions; its measured copy bandwidth (device to
   device ``copy_`` of 1 GiB) and matmul throughput (``torch.matmul`` 8192^3 in fp16, and in
   fp32 with TF32 off);
2. check: every model's generated kernels on the GPU against neuralc's reference interpreter,
   fp32 (IEEE ``tl.dot``: rtol 1e-4, atol 1e-5) and fp16 (against the reference running the
   same fp16 tensor IR: rtol/atol 4e-3), at batch 2;
3. models: each model at batch 1 and 64 in fp16: neuralc cuda with and without CUDA graphs,
   PyTorch eager (neuralc's PyTorch target, same weights, ``.half()``), ``torch.compile``
   (default, ``reduce-overhead``, ``max-autotune``) and onnxruntime-gpu if its CUDA provider
   is present (neuralc's fp16 ONNX model, inputs and outputs bound on the GPU); median of CUDA
   event timings after warm-up;
4. kernels: the slowest fused kernels of each model at batch 64, launched alone: achieved GB/s
   (bytes of the buffers they read and write) against the copy bandwidth, and for tl.dot
   kernels TFLOP/s against ``torch.matmul`` of the same (M, N, K) and dtype.

Compilation (Triton's JIT, torch.compile) counts against ``--budget`` (seconds, default 540);
when it runs out, the remaining measurements are listed as skipped. Goals the issue sets:
memory-bound fused kernels at >= 85% of copy bandwidth; models at batch 1 with CUDA graphs
faster than ``torch.compile(mode="reduce-overhead")``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MODELS = ["mnist_cnn", "resnet_small", "mobilenet_tiny", "vit_tiny", "transformer_classifier",
          "lstm_text_classifier"]
BATCHES = (1, 64)
TOL = {"fp32": (1e-4, 1e-5), "fp16": (4e-3, 4e-3)}
PEERS = ("torch-eager", "torch.compile", "torch.compile reduce-overhead",
         "torch.compile max-autotune", "onnxruntime-gpu")


def model_path(name: str) -> Path:
    if name.endswith(".nr") or "/" in name:
        return Path(name)
    return ROOT / "examples" / f"{name}.nr"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help="example names or .nr paths, comma-separated; 'all': every example")
    ap.add_argument("--batches", default=",".join(str(b) for b in BATCHES))
    ap.add_argument("--budget", type=float, default=540.0,
                    help="seconds for the whole run (default 540: under 10 minutes)")
    ap.add_argument("--repeat", type=int, default=50, help="timed iterations per measurement")
    ap.add_argument("--kernels", type=int, default=4, help="slowest kernels per model to time")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.md")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU needed: parse, compile every model for the cuda target, print "
                    "the plan, write nothing")
    args = ap.parse_args(argv)
    if args.models == "all":
        args.models = ",".join(sorted(p.stem for p in (ROOT / "examples").glob("*.nr")))
    args.model_list = [m for m in args.models.split(",") if m]
    args.batch_list = [int(b) for b in args.batches.split(",") if b]
    args.peer_list = [p for p in args.peers.split(",") if p]
    unknown = [p for p in args.peer_list if p not in PEERS]
    if unknown:
        ap.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    for m in args.model_list:
        if not model_path(m).exists():
            ap.error(f"no model {m} ({model_path(m)})")
    return args


@dataclass
class Built:
    """One model compiled for the cuda target (fp32 and fp16)."""

    name: str
    model: Any
    comps: dict[str, Any]
    weights: dict[str, Any]


@dataclass
class Report:
    command: str
    card: dict[str, Any] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    checks: list[tuple] = field(default_factory=list)
    models: list[tuple] = field(default_factory=list)
    kernels: list[tuple] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def build(names: list[str]) -> list[Built]:
    """Compile every model for the cuda target in fp32 and fp16 (no GPU needed)."""
    from neuralc.backends.cuda.compile import compile_for_cuda
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    out = []
    for name in names:
        model = compile_file(model_path(name))
        comps = {p: compile_for_cuda(model, 2, p) for p in ("fp32", "fp16")}
        out.append(Built(Path(name).stem, model, comps, init_weights(model.module, seed=0)))
    return out


class Clock:
    """The run's time budget; ``phase(fraction)`` caps the current phase at the point where
    that fraction of the budget is spent, so one slow phase cannot starve the others."""

    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.budget = budget
        self.until = budget

    def phase(self, fraction: float) -> None:
        self.until = self.budget * fraction

    def left(self) -> float:
        return self.until - (time.perf_counter() - self.start)


def cuda_ms(fn: Any, repeat: int, warmup: int = 5) -> float:
    """Median milliseconds of ``fn()`` by CUDA events, after warm-up."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def card(report: Report) -> None:
    import torch
    import triton

    p = torch.cuda.get_device_properties(0)
    ort = None
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        ort = f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"
    report.card = {"name": p.name, "capability": f"sm_{p.major}{p.minor}",
                   "memory": f"{p.total_memory / 2**30:.0f} GiB", "sms": p.multi_processor_count,
                   "torch": torch.__version__, "triton": triton.__version__,
                   "cuda": torch.version.cuda, "onnxruntime": ort or "absent",
                   "python": platform.python_version()}


def peaks(report: Report, repeat: int) -> None:
    import torch

    n = 1 << 28  # 2^28 floats: 1 GiB
    src = torch.empty(n, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = cuda_ms(lambda: dst.copy_(src), repeat)
    report.peaks["copy GB/s"] = 2 * n * 4 / ms / 1e6
    for dtype, label in ((torch.float16, "fp16"), (torch.float32, "fp32 (no TF32)")):
        torch.backends.cuda.matmul.allow_tf32 = False
        a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        ms = cuda_ms(lambda a=a, b=b: a @ b, max(5, repeat // 5))
        report.peaks[f"matmul {label} TFLOP/s"] = 2 * 8192**3 / ms / 1e9
    torch.cuda.empty_cache()


def executable(b: Built, precision: str, graphs: bool) -> Any:
    from neuralc.backends.cuda.runtime import CudaExecutable

    return CudaExecutable(b.comps[precision], b.model, b.weights, cuda_graphs=graphs)


def check(report: Report, built: list[Built], clock: Clock) -> None:
    import numpy as np

    from neuralc.runtime import samples
    from neuralc.runtime.interpreter import Interpreter, run_module

    for b in built:
        for precision in ("fp32", "fp16"):
            if clock.left() < 20:
                report.skipped.append(f"check {b.name} {precision}: time budget")
                continue
            t0 = time.perf_counter()
            try:
                exe = executable(b, precision, graphs=False)
                sizes = samples.symbol_sizes(b.model.module, 2, 16)
                xs = samples.random_inputs(b.model.module, sizes, np.random.default_rng(0))
                want = (run_module(b.model.module, xs, b.weights) if precision == "fp32" else
                        Interpreter(b.comps[precision].tensor).load(b.weights).run(xs))
                got = exe(xs)
                rtol, atol = TOL[precision]
                worst = 0.0
                for g, w in zip(got, want):
                    g64, w64 = g.astype(np.float64), w.astype(np.float64)
                    worst = max(worst, float(np.max(np.abs(g64 - w64) / (atol + rtol
                                                                       * np.abs(w64)))))
                report.checks.append((b.name, precision, len(b.comps[precision].program.kernels),
                                      worst, "pass" if worst <= 1 else "FAIL",
                                      time.perf_counter() - t0))
            except Exception as e:  # noqa: BLE001 - recorded in the results
                report.checks.append((b.name, precision, 0, float("nan"), f"error: {e}",
                                      time.perf_counter() - t0))
                report.errors.append(traceback.format_exc())


def torch_model(b: Built, tmp: Path) -> Any:
    """neuralc's PyTorch target for the model, with the same weights, on the GPU in fp16."""
    from neuralc.backends.base import BackendOptions
    from neuralc.backends.registry import get_backend

    backend = get_backend("pytorch")
    art = backend.emit(b.model, b.weights, BackendOptions())
    path = tmp / f"{b.name}_torch.py"
    art.write(path)
    spec = importlib.util.spec_from_file_location(f"bench_{b.name}_torch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.build_model()
    mod.load_weights(net, mod.WEIGHTS_FILE)
    return net.eval().cuda().half()


def onnx_session(b: Built, tmp: Path) -> Any:
    import onnxruntime as ort

    from neuralc.backends.base import BackendOptions
    from neuralc.backends.registry import get_backend

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    art = get_backend("onnx").emit(b.model, b.weights, BackendOptions(opset=17,
                                                                      precision="fp16"))
    path = tmp / f"{b.name}.onnx"
    art.write(path)
    return ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])


def models(report: Report, built: list[Built], args: argparse.Namespace, clock: Clock) -> None:
    import numpy as np
    import torch

    from neuralc.runtime import samples

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for b in built:
            for batch in args.batch_list:
                sizes = samples.symbol_sizes(b.model.module, batch, 64)
                xs = samples.random_inputs(b.model.module, sizes, np.random.default_rng(0))
                gpu = [torch.from_numpy(np.ascontiguousarray(x)).cuda() for x in xs]
                half = [g.half() if g.is_floating_point() else g for g in gpu]
                row: dict[str, Any] = {}
                for graphs in (True, False):
                    label = "neuralc cuda" + (" + graphs" if graphs else "")
                    if clock.left() < 10:
                        row[label] = "skipped (budget)"
                        continue
                    try:
                        exe = executable(b, "fp16", graphs)
                        env = exe.sizes(sizes)
                        row[label] = cuda_ms(
                            lambda exe=exe, env=env, gpu=gpu: exe.run_torch(gpu, env),
                            args.repeat)
                        if graphs and exe.graph_report != "replayed a CUDA graph":
                            row[label] = f"{row[label]:.3f} ({exe.graph_report})"
                    except Exception as e:  # noqa: BLE001
                        row[label] = f"error: {type(e).__name__}"
                        report.errors.append(traceback.format_exc())
                net = None
                for peer in args.peer_list:
                    if clock.left() < 20:
                        row[peer] = "skipped (budget)"
                        continue
                    try:
                        if peer == "onnxruntime-gpu":
                            row[peer] = time_onnx(b, tmp, xs, args.repeat)
                            continue
                        net = net or torch_model(b, tmp)
                        fn: Any = net
                        if peer.startswith("torch.compile"):
                            mode = peer.partition(" ")[2] or "default"
                            fn = torch.compile(net, mode=mode)
                        with torch.inference_mode():
                            row[peer] = cuda_ms(lambda fn=fn, half=half: fn(*half),
                                                args.repeat)
                    except Exception as e:  # noqa: BLE001
                        row[peer] = f"error: {type(e).__name__}"
                        report.errors.append(traceback.format_exc())
                report.models.append((b.name, batch, row))
                torch.cuda.empty_cache()


def time_onnx(b: Built, tmp: Path, xs: list[Any], repeat: int) -> Any:
    if importlib.util.find_spec("onnxruntime") is None:
        return "absent"
    import numpy as np

    sess = onnx_session(b, tmp)
    if sess is None:
        return "no CUDA provider"
    feeds = {i.name: (x.astype(np.float16) if x.dtype.kind == "f" else x)
             for i, x in zip(sess.get_inputs(), xs)}
    binding = sess.io_binding()
    import onnxruntime as ort

    for name, x in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for o in sess.get_outputs():
        binding.bind_output(o.name, "cuda")
    return cuda_ms(lambda: sess.run_with_iobinding(binding), repeat)


def kernels(report: Report, built: list[Built], args: argparse.Namespace, clock: Clock) -> None:
    import numpy as np
    import torch

    from neuralc.ir.dims import evaluate
    from neuralc.runtime import samples

    batch = max(args.batch_list)
    for b in built:
        if clock.left() < 10:
            report.skipped.append(f"kernels of {b.name}: time budget")
            continue
        exe = executable(b, "fp16", graphs=False)
        sizes = samples.symbol_sizes(b.model.module, batch, 64)
        xs = samples.random_inputs(b.model.module, sizes, np.random.default_rng(0))
        gpu = [torch.from_numpy(np.ascontiguousarray(x)).cuda() for x in xs]
        launches: list[tuple] = []
        env = exe.sizes(sizes)
        exe.program(*gpu, sizes=env, launch=_recorder(exe, launches))
        by_name = {k.name: k for k in b.comps["fp16"].program.kernels}
        timed = []
        for name, kernel, grid, a, cfg in launches:
            ms = cuda_ms(lambda k=kernel, g=grid, a=a, c=cfg: k[g(c)](*a, **c), 20, 3)
            nbytes = sum(t.numel() * t.element_size() for t in a if hasattr(t, "data_ptr"))
            timed.append((ms, name, nbytes))
        for ms, name, nbytes in sorted(timed, reverse=True)[:args.kernels]:
            k = by_name[name]
            gbs = nbytes / ms / 1e6
            row = [b.name, name, k.family, f"{ms * 1000:.1f}", f"{gbs:.0f}",
                   f"{100 * gbs / report.peaks.get('copy GB/s', float('nan')):.0f}%"]
            if k.flops is not None:
                flops = int(evaluate(k.flops, env))
                tf = flops / ms / 1e9
                row.append(f"{tf:.1f}")
                if k.gemm is not None:
                    bb, m, n, kk = (int(evaluate(d, env)) for d in k.gemm)
                    x = torch.randn(bb, m, kk, device="cuda", dtype=torch.float16)
                    y = torch.randn(bb, kk, n, device="cuda", dtype=torch.float16)
                    tms = cuda_ms(lambda x=x, y=y: torch.matmul(x, y), 20, 3)
                    row.append(f"{2 * bb * m * n * kk / tms / 1e9:.1f} "
                               f"(torch.matmul {bb}x{m}x{n}x{kk})")
                else:
                    row.append("-")
            else:
                row += ["-", "-"]
            report.kernels.append(tuple(row))


def _recorder(exe: Any, launches: list[tuple]) -> Any:
    """A ``launch`` callback that launches as usual and records each launch."""

    def record(name: str, kernel: Any, grid: Any, a: tuple) -> None:
        cfg = exe.program.config[name]
        kernel[grid(cfg)](*a, **cfg)
        launches.append((name, kernel, grid, a, cfg))

    return record


def fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: Report, args: argparse.Namespace) -> str:
    c = report.card
    lines = ["# neuralc cuda target on a GPU", "",
             f"Command: `{report.command}`", "",
             f"Card: **{c.get('name')}** ({c.get('capability')}, {c.get('memory')}, "
             f"{c.get('sms')} SMs); torch {c.get('torch')} (CUDA {c.get('cuda')}), triton "
             f"{c.get('triton')}, onnxruntime {c.get('onnxruntime')}, Python "
             f"{c.get('python')}.", "",
             "## Card peaks", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report.peaks.items()]
    lines += ["", "## Kernels against the reference (batch 2)", "",
              "| model | precision | kernels | worst error / tolerance | result | seconds |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {p} | {n} | {w:.3g} | {r} | {s:.1f} |"
              for m, p, n, w, r, s in report.checks]
    peers = ["neuralc cuda + graphs", "neuralc cuda", *args.peer_list]
    lines += ["", "## Models, fp16, milliseconds (median of CUDA events)", "",
              "| model | batch | " + " | ".join(peers) + " |",
              "|---|---|" + "---|" * len(peers)]
    for m, batch, row in report.models:
        lines.append(f"| {m} | {batch} | " + " | ".join(fmt(row.get(p, "-")) for p in peers)
                     + " |")
    lines += ["", "## Slowest fused kernels alone (fp16, batch "
              f"{max(args.batch_list)})", "",
              "| model | kernel | family | us | GB/s | of copy | TFLOP/s | matmul of that shape, "
              "TFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in report.kernels]
    if report.skipped:
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in report.skipped]
    if report.errors:
        lines += ["", "## Errors", "", "```"] + [e.rstrip() for e in report.errors] + ["```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/gpu/bench_gpu.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: this script measures the GPU", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    built = build(args.model_list)
    if args.dry_run:
        for b in built:
            n = {p: len(c.program.kernels) for p, c in b.comps.items()}
            fams = sorted({k.family for k in b.comps["fp16"].program.kernels})
            print(f"{b.name}: {n['fp32']} kernels fp32, {n['fp16']} fp16 ({'; '.join(fams)})")
        print(f"plan: card peaks; check {len(built)} models x fp32, fp16 at batch 2; time "
              f"batches {args.batch_list} with neuralc cuda (+/- graphs) and "
              f"{', '.join(args.peer_list)}; {args.kernels} slowest kernels per model; "
              f"budget {args.budget:.0f} s; results to {args.out}")
        print(f"built in {time.perf_counter() - t0:.1f} s (no GPU used)")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("no GPU: torch sees none (use --dry-run to check the plan here)", file=sys.stderr)
        return 2
    clock = Clock(args.budget - (time.perf_counter() - t0))
    report = Report(command)
    phases = ((0.05, lambda: card(report)), (0.1, lambda: peaks(report, args.repeat)),
              (0.4, lambda: check(report, built, clock)),
              (0.85, lambda: models(report, built, args, clock)),
              (1.0, lambda: kernels(report, built, args, clock)))
    for until, phase in phases:
        clock.phase(until)
        try:
            phase()
        except Exception:  # noqa: BLE001 - write what was measured, with the error
            report.errors.append(traceback.format_exc())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(report, args))
    print(markdown(report, args))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 1 if any(r[4] != "pass" for r in report.checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
