"""Device selection with the probes replaced by fixed answers: the variant chosen and the report.

Only the probe functions are doubled (what the CUDA driver, /proc/cpuinfo and the installed
packages say), and in one test the kinds this neuralc loads; the fake cuda and cpu entries are
manifest entries in the form those variants write, next to MNIST's real entries.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from api_helpers import MNIST, ROOT

import neuralc
from neuralc.api import model as model_module
from neuralc.api.build import build_artifact
from neuralc.backends import select
from neuralc.backends.cpu import variant as cpu_variant
from neuralc.backends.select import (
    CpuInfo,
    CudaInfo,
    Gpu,
    NoVariantError,
    parse_device,
    probe_cpu,
    probe_cuda,
    select_variant,
)
from neuralc.cli import main
from neuralc.driver import compile_file
from neuralc.runtime.artifact import pack, read_artifact
from neuralc.runtime.artifact_variants import VariantEntry
from neuralc.runtime.weights import init_weights

NO_DRIVER = CudaInfo(problem="no driver found")
H100 = CudaInfo((Gpu(0, "NVIDIA H100", (9, 0)),), driver_version=12080)
A10 = CudaInfo((Gpu(0, "NVIDIA A10", (8, 6)),), driver_version=12080)
SKYLAKE_X = CpuInfo("x86_64", frozenset({"sse2", "avx2", "fma", "avx512f"}))
HASWELL = CpuInfo("x86_64", frozenset({"sse2", "avx2", "fma"}))
OLD_X86 = CpuInfo("x86_64", frozenset({"sse2"}))
RISCV = CpuInfo("riscv64", frozenset())  # no native code of neuralc's runs on it

FAKE_ENTRIES = [
    {"name": "cuda-sm90", "kind": "cuda", "device": "cuda", "summary": "Triton cubins for sm_90",
     "requires": {"modules": ["torch"], "compute_capability": "9.0"}},
    {"name": "cuda-triton", "kind": "cuda", "device": "cuda",
     "summary": "Triton source, compiled for this GPU at load",
     "requires": {"modules": ["torch", "triton"], "min_compute_capability": "7.0"}},
    {"name": "cpu-avx512", "kind": "cpu", "device": "cpu", "summary": "native x86-64 AVX-512",
     "requires": {"arch": "x86_64", "cpu_features": ["avx512f", "avx2", "fma"]}},
    {"name": "cpu-x86-64-v3", "kind": "cpu", "device": "cpu", "summary": "native x86-64-v3",
     "requires": {"arch": "x86_64", "cpu_features": ["avx2", "fma"]}},
    {"name": "cpu-aarch64", "kind": "cpu", "device": "cpu", "summary": "native aarch64",
     "requires": {"arch": "aarch64", "cpu_features": ["neon"]}},
]


@pytest.fixture
def host(monkeypatch):
    """Set what the probes answer: host(cpu=..., cuda=..., missing={...})."""

    def set_host(cpu=SKYLAKE_X, cuda=NO_DRIVER, missing=frozenset()):
        monkeypatch.setattr(select, "probe_cpu", lambda: cpu)
        monkeypatch.setattr(select, "probe_cuda", lambda: cuda)
        monkeypatch.setattr(select, "has_module", lambda name: name not in missing)

    return set_host


def _real_portable(path):
    """The artifact's real onnx and reference entries (its native cpu and cuda entries would
    share names with the fake ones, such as cpu-avx512)."""
    return [e for e in read_artifact(path).manifest["variants"]
            if e["kind"] in ("onnx", "reference")]


@pytest.fixture(scope="module")
def entries(mnist_ncz):
    """The fake cuda and cpu entries, then the real onnx and reference entries of MNIST."""
    return [VariantEntry.from_json(e) for e in FAKE_ENTRIES + _real_portable(mnist_ncz)]


def choose(entries, **kwargs):
    return select_variant(entries, model_name="DigitNet", **kwargs)


def test_no_gpu_picks_the_best_cpu_code(host, entries):
    host(cuda=NO_DRIVER)
    s = choose(entries)
    assert (s.entry.name, s.device, s.warnings) == ("cpu-avx512", "cpu", [])
    assert s.report.splitlines() == [
        "DigitNet: running variant 'cpu-avx512' on cpu (native x86-64 AVX-512)",
        "  request: auto",
        "  host: x86_64 with avx512f, avx2, fma; cuda: no driver found",
        "  skipped cuda-sm90: no driver found",
        "  skipped cuda-triton: no driver found",
        "  also in the artifact: cpu-x86-64-v3, cpu-aarch64, onnx, reference",
    ]


def test_a_gpu_with_a_cubin_for_its_capability(host, entries):
    host(cuda=H100)
    s = choose(entries)
    assert (s.entry.name, s.device) == ("cuda-sm90", "cuda:0")
    assert "  host: x86_64 with avx512f, avx2, fma; cuda GPUs 0: NVIDIA H100 (sm_90)" in s.report
    assert "skipped" not in s.report


def test_a_gpu_with_only_the_triton_source(host, entries):
    host(cuda=A10)
    s = choose(entries)
    assert (s.entry.name, s.device) == ("cuda-triton", "cuda:0")
    assert s.skipped == [("cuda-sm90", "GPU 0 (NVIDIA A10) is sm_86; this code is for sm_90")]
    host(cuda=A10, missing={"triton"})
    s = choose(entries)
    assert s.entry.name == "cpu-avx512"
    assert ("cuda-triton", "triton is not installed") in s.skipped


def test_an_old_cpu_without_avx512(host, entries):
    host(cpu=HASWELL)
    s = choose(entries)
    assert s.entry.name == "cpu-x86-64-v3"
    assert "  host: x86_64 with avx2, fma (no avx512f); cuda: no driver found" in s.report
    assert "  skipped cpu-avx512: host lacks avx512f" in s.report
    host(cpu=OLD_X86, missing={"onnxruntime"})
    s = choose(entries)
    assert s.entry.name == "reference"
    assert [why for _, why in s.skipped] == [
        "no driver found", "no driver found", "host lacks avx512f", "host lacks avx2",
        "the host is x86_64, the code is for aarch64", "onnxruntime is not installed"]


def test_an_arm_host_runs_the_aarch64_code(host, entries):
    host(cpu=CpuInfo("aarch64", frozenset({"asimd"})))
    s = choose(entries)
    assert s.entry.name == "cpu-aarch64"
    assert "  skipped cpu-avx512: the host is aarch64, the code is for x86_64" in s.report


def test_an_override_that_cannot_be_honoured(host, entries):
    host(cuda=NO_DRIVER)
    s = choose(entries, device="cuda")
    assert s.entry.name == "cpu-avx512"
    assert s.warnings == ["device 'cuda' cannot be honoured (cuda-sm90: no driver found; "
                          "cuda-triton: no driver found); running cpu-avx512 on cpu instead"]
    assert "  request: cuda (asked for)" in s.report
    assert f"  warning: {s.warnings[0]}" in s.report
    host(cuda=H100)
    s = choose(entries, device="cuda:1")
    assert s.entry.name == "cpu-avx512"
    assert "cuda-sm90: there is no GPU 1 (the driver sees 1)" in s.warnings[0]


def test_the_models_execution_device(host, entries):
    host(cuda=NO_DRIVER)
    s = choose(entries, model_device="cuda")
    assert s.warnings[0].startswith('the model\'s execution { device: "cuda" } cannot be honoured')
    host(cuda=H100)
    s = choose(entries, model_device="cpu")
    assert s.entry.name == "cpu-avx512"
    assert s.skipped[0] == ("cuda-sm90", "not on the requested device (cpu)")
    assert choose(entries, model_device="cpu", device="auto").entry.name == "cuda-sm90"
    assert choose(entries, model_device="cpu", device="cuda:0").device == "cuda:0"


def test_unknown_requirements_and_unloadable_kinds_are_skipped(host, entries):
    host(cuda=H100)
    future = VariantEntry("cpu-amx", "cpu", "cpu", "?", {"amx_tiles": 8})
    s = choose([future, *entries], loadable={"cpu", "onnx", "reference"})
    assert s.entry.name == "cpu-avx512"
    assert s.skipped == [
        ("cuda-sm90", "this neuralc cannot load cuda variants"),
        ("cuda-triton", "this neuralc cannot load cuda variants"),
        ("cpu-amx", "needs 'amx_tiles', which this neuralc does not know (a newer one wrote it)")]


def test_real_cpu_levels_follow_the_faked_host(host, tmp_path, make_inputs):
    """The native entries as the cpu variant writes them (their real requirements), for three
    x86-64 levels: a host runs the best level it has every feature of, and loading runs it."""
    real = probe_cpu()
    if real.arch != "x86_64" or cpu_variant.host_level() == "x86-64":
        pytest.skip("needs an x86-64 host with AVX2 (x86-64-v3) to run the levels")
    graph = compile_file(MNIST)
    data = build_artifact(graph, init_weights(graph.module), source_text=MNIST.read_text(),
                          target="cpu", options={"cpu_levels": ["x86-64-v3", "x86-64"]})
    path = data.write(tmp_path / "levels.ncz")
    no_avx512 = frozenset(f for f in real.features if not f.startswith("avx512"))
    hosts = [(no_avx512, "cpu-x86-64-v3", "  skipped cpu-avx512: host lacks avx512f"),
             (no_avx512 - {"avx2"}, "cpu-x86-64", "  skipped cpu-x86-64-v3: host lacks avx2")]
    if cpu_variant.host_level() == "x86-64-v4":
        hosts.insert(0, (real.features, "cpu-avx512", None))
    outputs = []
    for features, chosen, skipped in hosts:
        host(cpu=CpuInfo("x86_64", features))
        model = neuralc.load(path)
        assert model.target == chosen
        assert skipped is None or skipped in model.selection_report.splitlines()
        (x,) = make_inputs(model)
        outputs.append(model(x))
    for y in outputs[1:]:
        np.testing.assert_allclose(y, outputs[0], rtol=1e-4, atol=1e-5)
    host(cpu=CpuInfo("aarch64", frozenset({"asimd"})))
    with pytest.raises(NoVariantError, match=r"cpu-x86-64: the host is aarch64, the code is "
                                             r"for x86_64\)"):
        neuralc.load(path)


def test_nothing_runs(host, entries):
    host(missing={"onnxruntime"})
    onnx = [e for e in entries if e.kind == "onnx"]
    with pytest.raises(NoVariantError, match=r"no variant of the artifact runs on this machine "
                                             r"\(onnx: onnxruntime is not installed\)"):
        choose(onnx)


def test_device_strings():
    assert parse_device(None) == ("auto", None)
    assert parse_device("GPU") == ("cuda", None)
    assert parse_device("cuda:3") == ("cuda", 3)
    with pytest.raises(neuralc.UsageError, match="unknown device 'cuda:x'"):
        parse_device("cuda:x")


def _with_fake_entries(src, dst):
    data = read_artifact(src)
    manifest = dict(data.manifest)
    real = _real_portable(src)
    fake_files = [{f"variants/{e['name']}/kernels.bin": e["name"].encode()} for e in FAKE_ENTRIES]
    manifest["variants"] = FAKE_ENTRIES + real
    shared = {n: data.members[n] for n in manifest["members"]}
    real_files = [{n: data.members[n] for n in v["files"]} for v in real]
    pack(manifest, shared, fake_files + real_files).write(dst)
    return dst


def test_load_skips_kinds_this_neuralc_cannot_load(host, mnist_ncz, tmp_path, make_inputs,
                                                  monkeypatch):
    """An artifact whose manifest has cuda and cpu entries, loaded by a neuralc that loads
    neither kind (one built without them: the registry is all that is doubled here), runs
    onnx, and the report says why each better entry was skipped."""
    monkeypatch.setattr(model_module, "load_variant_modules", lambda: ["onnx", "reference"])
    path = _with_fake_entries(mnist_ncz, tmp_path / "fat.ncz")
    host(cpu=HASWELL, cuda=H100)
    model = neuralc.load(path)
    assert model.target == "onnx"
    report = model.selection_report.splitlines()
    assert report[3:8] == [
        "  skipped cuda-sm90: this neuralc cannot load cuda variants",
        "  skipped cuda-triton: this neuralc cannot load cuda variants",
        "  skipped cpu-avx512: this neuralc cannot load cpu variants",
        "  skipped cpu-x86-64-v3: this neuralc cannot load cpu variants",
        "  skipped cpu-aarch64: this neuralc cannot load cpu variants"]
    (x,) = make_inputs(model)
    np.testing.assert_array_equal(model(x), neuralc.load(mnist_ncz, variant="onnx")(x))
    with zipfile.ZipFile(path) as z:
        assert len(json.loads(z.read("manifest.json"))["variants"]) == 7


def _cuda_unavailable(mnist_ncz):
    """Why device 'cuda' cannot be honoured without a driver: each cuda entry of the artifact
    (built where a GPU was), else the reason the build gave for having none."""
    manifest = read_artifact(mnist_ncz).manifest
    cuda = [v["name"] for v in manifest["variants"] if v["kind"] == "cuda"]
    if cuda:
        return "; ".join(f"{name}: no driver found" for name in cuda)
    return f"there is no cuda variant; cuda: {manifest['not_built']['cuda']}"


def test_load_warns_when_the_device_cannot_be_honoured(host, mnist_ncz):
    host(cuda=NO_DRIVER)
    why = _cuda_unavailable(mnist_ncz)
    with pytest.warns(neuralc.NeuralcWarning,
                      match=re.escape(f"device 'cuda' cannot be honoured ({why}); running ")):
        model = neuralc.load(mnist_ncz, device="cuda")
    assert model.device == "cpu"


def test_cli_verbose_report_and_warning(host, mnist_ncz, capsys):
    """A CPU the artifact has no native code for and no GPU driver: onnx runs, and the
    report says why the native and the cuda code were skipped."""
    host(cpu=RISCV, cuda=NO_DRIVER)
    manifest = read_artifact(mnist_ncz).manifest
    assert main(["run", str(mnist_ncz), "--random", "--device", "cuda", "-v"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"neuralc: warning: device 'cuda' cannot be honoured "
                      f"({_cuda_unavailable(mnist_ncz)}); running onnx on cpu instead")
    assert err[1] == ("DigitNet: running variant 'onnx' on cpu (neuralc's ONNX model, run by "
                      "onnxruntime's CPU provider)")
    assert any(v["kind"] == "cpu" for v in manifest["variants"])  # code for the real host
    for v in manifest["variants"]:
        if v["kind"] == "cpu":
            assert (f"  skipped {v['name']}: the host is riscv64, the code is for "
                    f"{v['requires']['arch']}") in err
        elif v["kind"] == "cuda":
            assert f"  skipped {v['name']}: no driver found" in err
    if "cuda" in manifest["not_built"]:
        assert f"  skipped cuda: not in this artifact ({manifest['not_built']['cuda']})" in err
    assert main(["run", str(mnist_ncz), "--random"]) == 0
    assert capsys.readouterr().err == (
        "neuralc: DigitNet: running variant 'onnx' on cpu (neuralc's ONNX model, run by "
        "onnxruntime's CPU provider)\n")


def test_cli_warns_about_the_models_execution_device(host, tmp_path, capsys):
    host(cuda=NO_DRIVER)
    source = MNIST.read_text().replace('device: "auto"', 'device: "cuda"')
    assert 'device: "cuda"' in source
    path = tmp_path / "m.nr"
    path.write_text(source)
    assert main(["run", str(path), "--random", "-v"]) == 0
    err = capsys.readouterr().err
    assert ('neuralc: warning: the model\'s execution { device: "cuda" } cannot be honoured '
            "(there is no cuda variant); running reference on cpu instead") in err
    assert "  request: cuda (from the model's execution { device })" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)
        model = neuralc.compile(path)
    assert model.manifest["model"]["execution_device"] == "cuda"


def test_the_real_probes_import_nothing_heavy():
    # Without /proc/cpuinfo (not Linux) the CPU probe asks llvmlite instead.
    heavy = ["torch", "onnxruntime", "triton"] + (["llvmlite"] if Path("/proc/cpuinfo").exists()
                                                  else [])
    code = ("import sys; from neuralc.backends.select import probe_cpu, probe_cuda; "
            "c = probe_cpu(); g = probe_cuda(); "
            "assert c.arch and (g.gpus or g.problem); "
            f"heavy = set({heavy!r}) & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    cpu = probe_cpu()
    if cpu.arch == "x86_64":
        assert cpu.has("sse2")
    cuda = probe_cuda()
    assert bool(cuda.gpus) != bool(cuda.problem)


def test_a_bare_directory_named_like_a_package_is_not_that_package(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """A folder called ``tensorrt`` beside the model (or this test suite's own
    tests/backends/tensorrt) is a namespace package to importlib, not TensorRT."""
    (tmp_path / "neuralc_probe_pkg").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not select.has_module("neuralc_probe_pkg")
    (tmp_path / "neuralc_probe_pkg" / "__init__.py").write_text("")
    assert select.has_module("neuralc_probe_pkg")
    assert select.has_module("numpy") and not select.has_module("no_such_package_here")
