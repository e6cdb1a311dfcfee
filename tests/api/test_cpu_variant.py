"""The ``cpu`` variant of an artifact: every example compiles, saves, loads and runs the object
code in-process without recompiling; the outputs equal the in-process cpu target's for the
same machine level, and the interpreter's within the cpu tolerances; ``neuralc.load`` and
``neuralc run model.ncz`` pick it over onnx and say so; other levels are built when asked and
judged by what the host has."""

from __future__ import annotations

import inspect
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from api_helpers import EXAMPLES, MNIST

import neuralc
from neuralc.api.build import build_artifact
from neuralc.backends.cpu import variant as cpu_variant
from neuralc.backends.cpu.compile import compile_for_cpu
from neuralc.backends.cpu.host import TargetSpec
from neuralc.backends.cpu.runtime import CpuExecutable
from neuralc.cli import main
from neuralc.driver import compile_file
from neuralc.runtime.artifact import ArtifactError
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

RTOL, ATOL = 1e-4, 1e-5
HOST_LEVEL = cpu_variant.host_level()
HOST_ENTRY, HOST_SPEC = cpu_variant.LEVELS[HOST_LEVEL][:2]


@pytest.fixture(autouse=True)
def session_code_cache(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects compiled by this session's code generator only (see tests/edge/conftest.py)."""
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "code-cache"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_round_trip_runs_the_object_code(path: Path, tmp_path: Path, make_inputs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)  # hpo.nr's defaulted values
        model = neuralc.compile(path, target="cpu")
    assert (model.target, model.device, model.variants) == (HOST_ENTRY, "cpu", [HOST_ENTRY])
    xs = make_inputs(model)
    y = model(xs)
    loaded = neuralc.load(model.save(tmp_path / "m.ncz"))
    assert loaded.target == HOST_ENTRY and loaded.signature == model.signature
    np.testing.assert_array_equal(loaded(*xs), y)

    graph = compile_file(path)
    weights = init_weights(graph.module)
    comp = compile_for_cpu(graph, spec=HOST_SPEC)
    # One thread, as the variant runs (its runner starts no thread pool).
    if "threads" in inspect.signature(CpuExecutable).parameters:
        same_code = CpuExecutable(comp, graph, weights, threads=1)
    else:
        same_code = CpuExecutable(comp, graph, weights)
    np.testing.assert_array_equal(same_code(xs)[0], y)
    np.testing.assert_allclose(y, run_module(graph.module, xs, weights)[0], rtol=RTOL,
                               atol=ATOL)


def test_load_and_run_pick_cpu_over_onnx(tmp_path: Path, capsys, make_inputs) -> None:
    model = neuralc.compile(MNIST)
    assert model.variants == [HOST_ENTRY, "onnx", "reference"]
    assert model.selection_report.splitlines()[0] == (
        f"DigitNet: running variant '{HOST_ENTRY}' on cpu ({cpu_variant.LEVELS[HOST_LEVEL][3]})")
    assert "  also in the artifact: onnx, reference" in model.selection_report
    path = model.save(tmp_path / "m.ncz")
    (x,) = make_inputs(model)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "-v",
                 "-o", str(tmp_path / "y.npy")]) == 0
    err = capsys.readouterr().err
    assert f"\nDigitNet: running variant '{HOST_ENTRY}' on cpu" in "\n" + err
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model(x))
    onnx = neuralc.load(path, variant="onnx")
    np.testing.assert_allclose(onnx(x), model(x), rtol=RTOL, atol=ATOL)


def test_more_levels_when_asked(tmp_path: Path, make_inputs,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    graph = compile_file(MNIST)
    data = build_artifact(graph, init_weights(graph.module), source_text=MNIST.read_text(),
                          target="cpu", options={"cpu_levels": ["x86-64-v3", "aarch64"]})
    names = [v["name"] for v in data.manifest["variants"]]
    assert names == list(dict.fromkeys([HOST_ENTRY, "cpu-x86-64-v3", "cpu-aarch64"]))
    path = tmp_path / "m.ncz"
    data.write(path)
    with zipfile.ZipFile(path) as z:
        tables = json.loads(z.read("variants/cpu-aarch64/program.json"))
        assert z.read("variants/cpu-aarch64/model.o")[:4] == b"\x7fELF"
    assert tables["target"]["triple"].startswith("aarch64") and tables["symbols"] == ["batch"]
    model = neuralc.load(path)
    if TargetSpec.host().arch == "x86_64":
        assert model.target == HOST_ENTRY
        assert "  also in the artifact: " in model.selection_report
        assert "cpu-aarch64" in model.selection_report
        v3 = neuralc.load(path, variant="cpu-x86-64-v3")
        (x,) = make_inputs(v3)
        np.testing.assert_allclose(v3(x), model(x), rtol=RTOL, atol=ATOL)
        with pytest.raises(ArtifactError, match="cpu-aarch64: the host is x86_64, the code is "
                                                "for aarch64"):
            neuralc.load(path, variant="cpu-aarch64")
    monkeypatch.setenv("NEURALC_CPU_LEVELS", "aarch64")
    data = build_artifact(graph, init_weights(graph.module), source_text=MNIST.read_text(),
                          target="cpu")
    assert [v["name"] for v in data.manifest["variants"]][-1] == "cpu-aarch64"
    monkeypatch.setenv("NEURALC_CPU_LEVELS", "pentium")
    with pytest.raises(neuralc.BackendUnavailable, match="unknown cpu level 'pentium'"):
        build_artifact(graph, init_weights(graph.module), source_text=MNIST.read_text(),
                       target="cpu")


def test_requirements_are_in_cpuinfo_names() -> None:
    """What selection compares with /proc/cpuinfo: the host entry's features are the host's."""
    from neuralc.backends.select import probe_cpu

    name, _, requires, _ = cpu_variant.LEVELS[HOST_LEVEL]
    cpu = probe_cpu()
    assert requires["arch"] == cpu.arch
    assert [f for f in requires["cpu_features"] if not cpu.has(f)] == []
    assert cpu_variant.LEVELS["x86-64-v4"][2]["cpu_features"][0] == "avx512f"


def test_code_needing_a_missing_runtime_function_is_not_built(make_inputs,
                                                              tmp_path: Path) -> None:
    """bfloat16 on a level without AVX512-BF16 calls the compiler runtime's __truncsfbf2, which
    a Python process may not have loaded: then the cpu variant is left out, saying so, instead
    of loading code that would call address 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)
        model = neuralc.compile(MNIST, precision="bf16")
    graph = compile_file(MNIST)
    code = compile_for_cpu(graph, 2, "bf16", HOST_SPEC)
    from neuralc.backends.cpu.edge.build import object_code

    missing = cpu_variant.unresolved(object_code(code.program.llvm_ir, HOST_SPEC, True))
    if missing:
        assert model.variants == ["reference"]
        assert (f"  skipped cpu: not in this artifact ({HOST_ENTRY} needs {', '.join(missing)}, "
                "which this process's C runtime lacks, for precision bf16 on "
                f"{HOST_SPEC.cpu})") in model.selection_report.splitlines()
    else:
        assert model.target == HOST_ENTRY
        (x,) = make_inputs(model)
        reference = neuralc.load(model.save(tmp_path / "m.ncz"), variant="reference")
        np.testing.assert_allclose(model(x), reference(x), atol=2e-2)


def test_undefined_symbols_of_an_object() -> None:
    from neuralc.backends.cpu.edge.build import object_code

    graph = compile_file(MNIST)
    comp = compile_for_cpu(graph, spec=TargetSpec.x86_64())
    names = cpu_variant.undefined_symbols(object_code(comp.program.llvm_ir, comp.spec, True))
    assert all(isinstance(n, str) and not n.startswith(("k.", "nc_")) for n in names)
    assert cpu_variant.unresolved(object_code(comp.program.llvm_ir, comp.spec, True)) == []
    with pytest.raises(ArtifactError, match="not a 64-bit ELF object"):
        cpu_variant.undefined_symbols(b"not an object")
