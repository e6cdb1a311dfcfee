"""CPU inference latency of neuralc's artifacts and of the peers, measured in one run.

Run:
    .venv/bin/python benchmarks/runtime_cpu.py --repeat 30 --out benchmarks/results/runtime_cpu.md

For each model and batch size, on the same weights and input:

- ``neuralc onnx``: neuralc's ONNX output (``--target onnx``) run by onnxruntime (CPU provider,
  default graph optimisations, default threads);
- ``neuralc torch``: neuralc's generated PyTorch module (``--target pytorch``), eager;
- ``torch.compile``: the same generated module compiled by TorchInductor (the peer compiler;
  its compile time is reported separately and not in the latency);
- ``reference``: neuralc's numpy reference interpreter at -O2 (the oracle; slow by design).

Latency is the median of ``--repeat`` timed calls after warm-up. Ratios are against PyTorch
eager on the generated module (> 1 means faster than eager). Outputs of every runner are
checked against the reference first (rtol 1e-3), so a fast wrong answer cannot win.
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
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuralc.backends.base import BackendOptions  # noqa: E402
from neuralc.backends.registry import get_backend  # noqa: E402
from neuralc.driver import compile_file, tensor_stage  # noqa: E402
from neuralc.passes.pipelines import pipeline, tensor_pipeline  # noqa: E402
from neuralc.runtime.interpreter import run_module  # noqa: E402
from neuralc.runtime.samples import random_inputs, symbol_sizes  # noqa: E402
from neuralc.runtime.weights import init_weights  # noqa: E402

MODELS = ["mnist_cnn", "resnet_small", "mobilenet_tiny", "transformer_classifier",
          "lstm_text_classifier", "unet_small"]


def inputs_for(module, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same seeded samples `neuralc run --random` uses, with 64 for every other symbol."""
    return random_inputs(module, symbol_sizes(module, batch, 64), rng)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    from safetensors.torch import load_file

    from neuralc.runtime.weights import save_weights

    tmp = Path(tempfile.mkdtemp(prefix="neuralc-bench-"))
    rows = []
    for name in args.models.split(","):
        model = compile_file(ROOT / "examples" / f"{name}.nr")
        weights = init_weights(model.module, seed=0)
        optimised, _ = tensor_stage(model, tensor_pipeline(2)[len(pipeline(2)):])
        onnx_art = get_backend("onnx").emit(model, weights, BackendOptions())
        sess = ort.InferenceSession(onnx_art.data, providers=["CPUExecutionProvider"])
        in_names = [i.name for i in sess.get_inputs()]
        py_art = get_backend("pytorch").emit(model, weights, BackendOptions())
        py_path = tmp / f"{name}_{uuid.uuid4().hex}.py"
        py_path.write_bytes(py_art.data)
        spec = importlib.util.spec_from_file_location(py_path.stem, py_path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        net = mod.build_model().eval()
        wfile = tmp / f"{name}.safetensors"
        save_weights(wfile, weights)
        net.load_state_dict(load_file(str(wfile)), strict=True)
        compiled, compile_s = None, None
        if not args.no_compile:
            try:
                t0 = time.perf_counter()
                compiled = torch.compile(net)
                with torch.no_grad():
                    compiled(*[torch.from_numpy(x) for x in inputs_for(model.module, 1,
                                                                       np.random.default_rng(0))])
                compile_s = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - report the peer's failure, keep measuring
                compiled, compile_s = None, f"failed: {type(e).__name__}"
        for batch in (int(b) for b in args.batches.split(",")):
            xs = inputs_for(model.module, batch, np.random.default_rng(batch))
            ref = run_module(optimised, xs, weights)[0]
            feeds = dict(zip(in_names, xs))
            txs = [torch.from_numpy(x) for x in xs]
            runners: dict[str, Callable[[], object]] = {
                "neuralc onnx": lambda s=sess, f=feeds: s.run(None, f),
                "neuralc torch": lambda n=net, t=txs: n(*t),
            }
            if compiled is not None:
                runners["torch.compile"] = lambda c=compiled, t=txs: c(*t)
            row = {"model": name, "batch": batch}
            with torch.no_grad():
                for label, fn in runners.items():
                    out = fn()
                    y = out[0] if isinstance(out, list) else out
                    y = y.numpy() if hasattr(y, "numpy") else y
                    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-3, atol=1e-4)
                    row[label] = median_ms(fn, args.repeat)
            row["reference"] = median_ms(
                lambda m=optimised, x=xs, w=weights: run_module(m, x, w), max(3, args.repeat // 10))
            row["compile_s"] = compile_s
            rows.append(row)
            print(row, flush=True)

    labels = ["neuralc onnx", "neuralc torch", "torch.compile", "reference"]
    lines = [
        "# CPU inference latency (ms, median) and speed-up over PyTorch eager",
        "",
        f"Command: `.venv/bin/python benchmarks/runtime_cpu.py --repeat {args.repeat} "
        f"--batches {args.batches}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, onnxruntime {ort.__version__}",
        "Each cell: latency in ms (speed-up vs `neuralc torch`, i.e. PyTorch eager on the same "
        "model). torch.compile compile time is in the last column.",
        "",
        "| model | batch | " + " | ".join(labels) + " | torch.compile compile (s) |",
        "|---|---|" + "---|" * (len(labels) + 1),
    ]
    for r in rows:
        base = r["neuralc torch"]
        cells = []
        for label in labels:
            v = r.get(label)
            cells.append("n/a" if v is None else f"{v:.2f} ({base / v:.2f}x)")
        c = r["compile_s"]
        cstr = c if isinstance(c, str) else ("n/a" if c is None else f"{c:.1f}")
        lines.append(f"| {r['model']} | {r['batch']} | " + " | ".join(cells) + f" | {cstr} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
