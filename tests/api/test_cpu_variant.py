"""The ``cpu`` variant of an artifact: every example compiles, saves, loads and runs the object
code in-process without recompiling; the outputs equal the in-process cpu target's for the
same machine level, and the interpreter's within the cpu tolerances; ``neuralc.load`` and
``neuralc run model.ncz`` pick it over onnx and say so; other levels are built when asked and
judged by what the host has."""

from __future__ import annotations

import inspect
import json
import threading
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


def test_a_scalar_weight_keeps_its_shape(tmp_path: Path, make_inputs) -> None:
    """Attention(use_scale=true) has a 0-d weight: the runner binds it as it is (a 1-d copy
    would fail the shape check, and with it every auto build of such a model)."""
    source = """
        network Scaled {
          input: (seq, 8)
          layers:
            Attention(use_scale=true)
            GlobalAveragePooling1D()
            Output(3)
        }
    """
    model = neuralc.compile(source, device="cpu")
    assert model.target == HOST_ENTRY
    (x,) = make_inputs(model)
    reference = neuralc.load(model.save(tmp_path / "m.ncz"), variant="reference")
    np.testing.assert_allclose(model(x), reference(x), rtol=RTOL, atol=ATOL)


def test_calls_from_several_threads(make_inputs) -> None:
    """ctypes releases the GIL for the native call: calls at once from several threads, of
    several batch sizes, must not share (or free) one another's arena."""
    model = neuralc.compile(MNIST, target="cpu")
    inputs = {b: make_inputs(model, batch=b, seed=b)[0] for b in (1, 8, 32)}
    want = {b: model(x) for b, x in inputs.items()}
    wrong: list[int] = []

    def calls(seed: int) -> None:
        for b in np.random.default_rng(seed).choice(list(inputs), 40):
            if not np.array_equal(model(inputs[b]), want[b]):
                wrong.append(int(b))

    threads = [threading.Thread(target=calls, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


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


@pytest.mark.parametrize("level", ["x86-64-v4", "x86-64-v3", "x86-64"])
def test_bf16_code_needs_no_runtime_function(level: str) -> None:
    """bfloat16 is converted in integer arithmetic, never through LLVM's ``bfloat`` type, which
    it would promote and round through the compiler runtime's __truncsfbf2 on CPUs without
    AVX512-BF16 (a function a Python process may not have: a call to address 0)."""
    from neuralc.backends.cpu.edge.build import object_code

    spec = cpu_variant.LEVELS[level][1]
    code = compile_for_cpu(compile_file(MNIST), 2, "bf16", spec)
    names = cpu_variant.undefined_symbols(object_code(code.program.llvm_ir, spec, True))
    assert not [n for n in names if "bf" in n], names


def test_bf16_cpu_variant_matches_the_reference(make_inputs, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)
        model = neuralc.compile(MNIST, precision="bf16")
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
    with pytest.raises(ArtifactError, match="not a 64-bit little-endian ELF object"):
        cpu_variant.undefined_symbols(b"not an object")
    header = b"\x7fELF\x02\x01" + bytes(58)  # an ELF header whose tables point nowhere
    with pytest.raises(ArtifactError, match="damaged symbol table"):
        cpu_variant.undefined_symbols(header[:0x28] + (10**6).to_bytes(8, "little")
                                      + header[0x30:0x3A] + (64).to_bytes(2, "little")
                                      + (3).to_bytes(2, "little"))
