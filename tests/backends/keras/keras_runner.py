"""Runs generated Keras modules in one process: the tests start it once with
KERAS_BACKEND=torch, because importing Keras takes seconds.

Usage: python keras_runner.py MANIFEST.json RESULTS.json. Each manifest case names a generated
module and what to do with it:

- ``predict``: build_model(), load_weights_safetensors(), then the model on each input set
  (``.npz`` files of arrays ``x0, x1, ...``), outputs saved as ``.npz`` (``y0, y1, ...``);
- ``fit``: train(x, y) for one epoch on tiny data; records the loss history;
- ``main``: the file's ``__main__`` entry with the given argv (runpy), as ``python file.py``;
- ``reload``: build, load weights, save as ``.keras``, load_model, compare predictions;
- ``bad_weights``: the message of the loader's error for a weights file that does not fit.

neuralc itself is blocked from being imported, which shows the generated files stand alone.
Every case's failure is reported separately (its traceback), so one bad model fails one test.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import runpy
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np


class _BlockNeuralc(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "neuralc" or name.startswith("neuralc."):
            raise ImportError(f"generated code imported {name}; it must stand alone")
        return None


def _module(path: str, key: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"generated_{key}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _arrays(path: str, prefix: str) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [z[f"{prefix}{i}"] for i in range(len(z.files))]


def _predict(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    import keras

    y = model(xs[0] if len(xs) == 1 else xs, training=False)
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    return [keras.ops.convert_to_numpy(v) for v in ys]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    kind = case["kind"]
    if kind == "main":
        argv = sys.argv
        sys.argv = [case["module"], *case["argv"]]
        try:
            runpy.run_path(case["module"], run_name="__main__")
        except SystemExit as e:
            return {"exit": e.code if isinstance(e.code, int) else (0 if e.code is None else 1)}
        finally:
            sys.argv = argv
        return {"exit": 0}
    mod = _module(case["module"], case["id"].replace("-", "_").replace("/", "_"))
    model = mod.build_model()
    if kind == "bad_weights":
        try:
            mod.load_weights_safetensors(model, case["weights"])
        except ValueError as e:
            return {"message": str(e)}
        return {"message": None}
    if case.get("weights"):
        mod.load_weights_safetensors(model, case["weights"])
    if kind == "predict":
        outs = []
        for i, inputs in enumerate(case["inputs"]):
            ys = _predict(model, _arrays(inputs, "x"))
            out = str(Path(case["out_dir"]) / f"{case['id'].replace('/', '_')}_{i}.npz")
            np.savez(out, **{f"y{j}": y for j, y in enumerate(ys)})
            outs.append(out)
        return {"outputs": outs, "layers": [layer.name for layer in model.layers]}
    if kind == "fit":
        xs = _arrays(case["inputs"][0], "x")
        ys = _arrays(case["labels"], "y")
        before = [w.copy() for w in model.get_weights()]
        mod.train(xs[0] if len(xs) == 1 else xs, ys[0] if len(ys) == 1 else ys, model,
                  epochs=1, batch_size=case.get("batch_size", 4), verbose=0)
        after = model.get_weights()
        changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
        return {"loss": [float(v) for v in model.history.history["loss"]], "changed": changed}
    if kind == "reload":
        import keras

        xs = _arrays(case["inputs"][0], "x")
        path = str(Path(case["out_dir"]) / f"{case['id'].replace('/', '_')}.keras")
        model.save(path)
        again = keras.saving.load_model(path)
        a, b = _predict(model, xs), _predict(again, xs)
        return {"max_diff": max(float(np.max(np.abs(p - q))) for p, q in zip(a, b)),
                "names": [layer.name for layer in again.layers]}
    raise ValueError(f"unknown case kind {kind!r}")


def main() -> int:
    sys.meta_path.insert(0, _BlockNeuralc())
    cases = json.loads(Path(sys.argv[1]).read_text())
    results: dict[str, Any] = {}
    for case in cases:
        start = time.perf_counter()
        try:
            results[case["id"]] = {"ok": True, **run_case(case)}
        except BaseException:  # noqa: BLE001 - every failure is reported with its case
            results[case["id"]] = {"ok": False, "error": traceback.format_exc()}
        results[case["id"]]["seconds"] = time.perf_counter() - start
    Path(sys.argv[2]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
