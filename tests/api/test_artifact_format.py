"""The artifact: its contents, and a clear error for every way a file can be wrong."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from api_helpers import MNIST

import neuralc
from neuralc.backends.cpu import variant as cpu_variant
from neuralc.cli import main
from neuralc.runtime.artifact import FORMAT_VERSION, ArtifactError, version_problem

HOST_ENTRY = cpu_variant.LEVELS[cpu_variant.host_level()][0]  # auto's native code for here


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(path: Path, members: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return path


def _with_manifest(src: Path, dst: Path, change) -> Path:
    members = _members(src)
    manifest = json.loads(members["manifest.json"])
    change(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    return _rezip(dst, members)


def _names(manifest: dict) -> list[str]:
    return [v["name"] for v in manifest["variants"]]


def test_contents_digests_and_weights_stored_once(mnist_ncz):
    members = _members(mnist_ncz)
    manifest = json.loads(members["manifest.json"])
    variants = {v["name"]: v for v in manifest["variants"]}
    # cuda entries only where the build saw a GPU; else the manifest says why there are none.
    cuda = [n for n in variants if variants[n]["kind"] == "cuda"]
    assert bool(cuda) != ("cuda" in manifest["not_built"])
    assert _names(manifest) == cuda + [HOST_ENTRY, "onnx", "reference"]
    assert list(variants[HOST_ENTRY]["files"]) == [f"variants/{HOST_ENTRY}/model.o",
                                                   f"variants/{HOST_ENTRY}/program.json"]
    assert list(variants["onnx"]["files"]) == ["variants/onnx/model.onnx"]
    assert list(variants["reference"]["files"]) == ["variants/reference/model.nir"]
    assert list(members)[:3] == ["manifest.json", "graph.nir", "weights.safetensors"]
    rest = list(members)[3:]  # each variant's files, best variant first
    assert sorted(rest) == sorted(f for v in manifest["variants"] for f in v["files"])
    assert list(dict.fromkeys(m.split("/")[1] for m in rest)) == _names(manifest)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["neuralc_version"] == neuralc.__version__
    assert manifest["model"]["source_sha256"] == hashlib.sha256(MNIST.read_bytes()).hexdigest()
    assert (manifest["precision"], manifest["opt_level"]) == ("fp32", 2)
    for v in manifest["variants"]:
        for name, digest in v["files"].items():
            assert hashlib.sha256(members[name]).hexdigest() == digest
    # The ONNX model points into weights.safetensors instead of holding a second copy, and the
    # native code reads the weights through its pointer table: neither holds them again.
    assert len(members["weights.safetensors"]) > 900_000
    assert len(members["variants/onnx/model.onnx"]) < 10_000
    assert variants["onnx"]["meta"]["shared_weights"] == 8
    assert sum(len(members[f]) for f in variants[HOST_ENTRY]["files"]) < 100_000


def test_the_cli_and_the_api_write_the_same_artifact(mnist_ncz, tmp_path, capsys):
    out = tmp_path / "cli.ncz"
    assert main([str(MNIST), "--target", "auto", "-o", str(out)]) == 0
    names = _names(json.loads(_members(mnist_ncz)["manifest.json"]))
    assert HOST_ENTRY in names
    assert f"wrote {out} (variants, best first: {', '.join(names)})" in capsys.readouterr().out
    assert _members(out) == _members(mnist_ncz)


def test_loading_needs_no_source_file(tmp_path, make_inputs):
    source = tmp_path / "model.nr"
    shutil.copy(MNIST, source)
    model = neuralc.compile(source)
    (x,) = make_inputs(model)
    y = model(x)
    path = model.save(tmp_path / "model.ncz")
    source.unlink()
    np.testing.assert_array_equal(neuralc.load(path)(x), y)


def test_each_variant_of_one_artifact_agrees(mnist_ncz, make_inputs):
    onnx = neuralc.load(mnist_ncz, variant="onnx")
    reference = neuralc.load(mnist_ncz, variant="reference")
    native = neuralc.load(mnist_ncz, variant="cpu")  # a kind names its best entry here
    assert (native.target, native.device) == (HOST_ENTRY, "cpu")
    (x,) = make_inputs(onnx)
    np.testing.assert_allclose(onnx(x), reference(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(native(x), reference(x), rtol=1e-4, atol=1e-5)
    names = re.escape(", ".join(reference.variants))
    with pytest.raises(ArtifactError, match=f"has no variant 'tensorrt'; it has: {names}$"):
        neuralc.load(mnist_ncz, variant="tensorrt")


def _corrupt(kind: str, src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    members = _members(src)
    if kind == "not a zip":
        dst.write_bytes(b"\x93NUMPY this is not an artifact")
    elif kind == "empty":
        dst.write_bytes(b"")
    elif kind == "truncated":
        dst.write_bytes(data[: len(data) // 2])
    elif kind == "no manifest":
        del members["manifest.json"]
        _rezip(dst, members)
    elif kind == "manifest not json":
        members["manifest.json"] = b"{not json"
        _rezip(dst, members)
    elif kind == "format version":
        _with_manifest(src, dst, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    elif kind == "neuralc version":
        _with_manifest(src, dst, lambda m: m.update(neuralc_version="0.9.0"))
    elif kind == "tampered weights":
        w = bytearray(members["weights.safetensors"])
        w[-1] ^= 0xFF
        members["weights.safetensors"] = bytes(w)
        _rezip(dst, members)
    elif kind == "tampered ir":
        members["variants/reference/model.nir"] += b"\n// edited\n"
        _rezip(dst, members)
    elif kind == "extra member":
        members["variants/evil.py"] = b"import os"
        _rezip(dst, members)
    elif kind == "missing member":
        del members["variants/onnx/model.onnx"]
        _rezip(dst, members)
    elif kind == "unsafe name":
        def rename(m):
            v = m["variants"][1]
            v["files"] = {"../../etc/model.nir": next(iter(v["files"].values()))}
        _with_manifest(src, dst, rename)
    elif kind == "damaged bytes":
        with zipfile.ZipFile(src) as z:
            info = z.getinfo("weights.safetensors")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
        broken = bytearray(data)
        for i in range(start, start + 64):
            broken[i] ^= 0x5A
        dst.write_bytes(bytes(broken))
    return dst


@pytest.mark.parametrize("kind, message", [
    ("not a zip", "is not a neuralc artifact (not a zip file)"),
    ("empty", "is empty, not a neuralc artifact"),
    ("truncated", "is truncated or damaged (its zip directory cannot be read"),
    ("no manifest", "has no manifest.json; it is not a neuralc artifact"),
    ("manifest not json", "manifest.json is not valid JSON"),
    ("format version", f"has artifact format version {FORMAT_VERSION + 1} (a newer neuralc "
                       f"wrote it); this neuralc {neuralc.__version__} reads version "
                       f"{FORMAT_VERSION} only"),
    ("neuralc version", "it was written by neuralc 0.9.0, and this neuralc"),
    ("tampered weights", "member 'weights.safetensors' does not match its SHA-256 in "
                         "manifest.json (the file was modified after it was written)"),
    ("tampered ir", "member 'variants/reference/model.nir' does not match its SHA-256"),
    ("extra member", "holds member 'variants/evil.py', which manifest.json does not list"),
    ("missing member", "lacks member 'variants/onnx/model.onnx', which manifest.json lists"),
    ("unsafe name", "manifest.json names an unsafe member name '../../etc/model.nir'"),
    ("damaged bytes", "member 'weights.safetensors' is damaged"),
])
def test_broken_artifacts_are_one_clear_error(kind, message, mnist_ncz, tmp_path, capsys):
    path = _corrupt(kind, mnist_ncz, tmp_path / "broken.ncz")
    with pytest.raises(ArtifactError) as e:
        neuralc.load(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)
    code = main(["run", str(path), "--random"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"neuralc: error: {e.value}\n"
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_version_rule():
    assert version_problem("0.1.9", "0.1.0") is None
    assert version_problem("0.1.0", "0.1.9") is None
    assert "reads artifacts of neuralc 0.1.x only" in version_problem("0.2.0", "0.1.3")
    assert "reads artifacts of neuralc 1.2.x only" in version_problem("1.3.0", "1.2.0")
    assert "unreadable neuralc version" in version_problem("7", "0.1.0")


def test_a_compatible_patch_version_loads(mnist_ncz, tmp_path):
    major, minor, _ = neuralc.__version__.split(".")
    path = _with_manifest(mnist_ncz, tmp_path / "patch.ncz",
                          lambda m: m.update(neuralc_version=f"{major}.{minor}.99"))
    assert neuralc.load(path, device="cpu").target == HOST_ENTRY


def test_cli_artifact_usage_errors(mnist_ncz, capsys):
    cases = [(["run", "no/such.ncz", "--random"], "no such file: no/such.ncz"),
             (["run", str(mnist_ncz), "--random", "--weights", "w.safetensors"],
              "--weights applies to .nr models"),
             (["run", str(mnist_ncz)], "give the model's input with --input"),
             (["run", str(mnist_ncz), "--random", "--device", "tpu"], "unknown device 'tpu'"),
             ([str(MNIST), "--target", "pytorch", "-o", "m.ncz"], "writes source code"),
             ([str(MNIST), "--emit", "tensor-ir", "-o", "m.ncz"], "drop them when writing")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
