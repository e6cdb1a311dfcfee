"""Preparing the keras-target cases by id and running them in one Keras process.

Case ids: ``example/<stem>`` and ``layer/<id>`` (outputs against the reference),
``fit/<name>`` (one epoch of train()), ``reload/<name>`` (save as .keras and load back),
``cli/<stem>`` (written by the ``neuralc`` command line, then run through the file's own
``__main__``: predict with the weights file written beside it, and train).
"""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from keras_cases import (
    EXAMPLES,
    FIT_TEXTS,
    LAYER_CASES,
    Prepared,
    compile_case,
    labels_for,
    prepare,
    random_inputs,
    run_keras,
    symbol_sizes,
)
from safetensors.numpy import load_file, save_file

from neuralc.backends.base import BackendOptions
from neuralc.cli import main as neuralc_main
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, weight_specs

LAYERS = {cid: (text, sizes) for cid, text, sizes in LAYER_CASES}
EXAMPLE_PATHS = {p.stem: p for p in EXAMPLES}


@dataclass
class CliCase:
    module_path: Path
    outputs: Path
    saved: Path
    expected: list[np.ndarray]
    compile_stdout: str


@dataclass
class KerasSession:
    work: Path
    prepared: dict[str, Prepared] = field(default_factory=dict)
    cli: dict[str, CliCase] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # preparation failures by case

    def _source(self, name: str) -> Any:
        """An example path, a layer case's text or a fit text, by name."""
        if name in EXAMPLE_PATHS:
            return EXAMPLE_PATHS[name], {}
        if name in LAYERS:
            return LAYERS[name]
        return FIT_TEXTS[name], {}

    def _prepared(self, case: str, name: str, options: BackendOptions | None = None,
                  perturb: bool = True) -> Prepared:
        src, sizes = self._source(name)
        model = compile_case(src, f"{name}.nr")
        p = prepare(case, model, self.work, sizes, options=options, perturb=perturb)
        self.prepared[case] = p
        return p

    def run(self, case_ids: list[str]) -> None:
        manifest: list[dict[str, Any]] = []
        for case in case_ids:
            try:
                manifest += self._case(case)
            except Exception:  # noqa: BLE001 - reported by the case's own test
                self.errors[case] = traceback.format_exc()
        self.results = run_keras(manifest, self.work) if manifest else {}

    def _case(self, case: str) -> list[dict[str, Any]]:
        """Prepare one case; its runner entries."""
        manifest: list[dict[str, Any]] = []
        if True:
            kind, name = case.split("/", 1)
            if kind in ("example", "layer", "mixed"):
                options = BackendOptions(precision="mixed") if kind == "mixed" else None
                p = self._prepared(case, name, options)
                manifest.append({"id": case, "kind": "predict", "module": str(p.module_path),
                                 "weights": str(p.weights_path),
                                 "inputs": [str(i) for i in p.inputs],
                                 "out_dir": str(self.work)})
            elif kind == "fit":
                p = self._prepared(case, name, perturb=False)
                rng = np.random.default_rng(7)
                xs = random_inputs(p.model, symbol_sizes(p.model, 8, 0, {}), rng)
                x_path = self.work / f"{case.replace('/', '_')}_fit_x.npz"
                y_path = self.work / f"{case.replace('/', '_')}_fit_y.npz"
                np.savez(x_path, **{f"x{i}": x for i, x in enumerate(xs)})
                np.savez(y_path, y0=labels_for(p.model, xs, rng))
                manifest.append({"id": case, "kind": "fit", "module": str(p.module_path),
                                 "weights": str(p.weights_path), "inputs": [str(x_path)],
                                 "labels": str(y_path), "batch_size": 4})
            elif kind == "reload":
                p = self._prepared(case, name)
                manifest.append({"id": case, "kind": "reload", "module": str(p.module_path),
                                 "weights": str(p.weights_path), "inputs": [str(p.inputs[1])],
                                 "out_dir": str(self.work)})
            elif kind == "bad-weights":
                p = self._prepared(case, name)
                good = load_file(str(p.weights_path))
                weight, bias = list(weight_specs(p.model.module))[:2]  # the first layer's
                bad = {k: v for k, v in good.items() if k != bias}
                bad[weight] = np.ascontiguousarray(good[weight].T)  # Keras's layout
                bad["stray.weight"] = np.zeros(2, np.float32)
                path = self.work / f"{case.replace('/', '_')}_bad.safetensors"
                save_file(bad, str(path))
                manifest.append({"id": case, "kind": "bad_weights", "module": str(p.module_path),
                                 "weights": str(path)})
            elif kind == "cli":
                manifest += self._cli(case, name)
            else:
                raise ValueError(case)
        return manifest

    def _cli(self, case: str, stem: str) -> list[dict[str, Any]]:
        """Write the model with the neuralc command line, then run its __main__ twice."""
        d = self.work / f"cli_{stem}"
        d.mkdir()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = neuralc_main([str(EXAMPLE_PATHS[stem]), "--target", "keras", "-o",
                                 str(d / "model.py")])
        assert code == 0, out.getvalue()
        model = compile_case(EXAMPLE_PATHS[stem])
        rng = np.random.default_rng(3)
        xs = random_inputs(model, symbol_sizes(model, 2, 0, {}), rng)
        names = model.info.input_names
        args: list[str] = []
        for name, x in zip(names, xs):
            np.save(d / f"{name}.npy", x)
            args += ["-x", f"{name}={d / (name + '.npy')}" if len(xs) > 1 else
                     str(d / f"{name}.npy")]
        np.save(d / "labels.npy", labels_for(model, xs, rng))
        expected = run_module(model.module, xs, init_weights(model.module, seed=0))
        self.cli[case] = CliCase(d / "model.py", d / "y.npy", d / "trained.keras", expected,
                                 out.getvalue())
        return [
            {"id": case + ":predict", "kind": "main", "module": str(d / "model.py"),
             "argv": ["predict", *args, "-o", str(d / "y.npy")]},
            {"id": case + ":train", "kind": "main", "module": str(d / "model.py"),
             "argv": ["train", *args, "-y", str(d / "labels.npy"), "--epochs", "1",
                      "--batch-size", "2", "--validation-split", "0", "--save",
                      str(d / "trained.keras"),
                      *([] if model.info.training.loss else ["--loss", "mse"])]},
        ]

    def result(self, case: str) -> dict[str, Any]:
        base = case.split(":")[0]
        if base in self.errors:
            raise AssertionError(f"{base} could not be prepared:\n{self.errors[base]}")
        r = self.results[case]
        if not r["ok"]:
            raise AssertionError(f"{case} failed in Keras:\n{r['error']}")
        return r
