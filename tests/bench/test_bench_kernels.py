"""``--kernels``: the kernel table's bytes and FLOPs are ``check --report``'s, kernels are timed,
``-O0`` kernels map onto the fused ones, and the roofline figures follow from the ceilings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bench_helpers import run_cli

from neuralc.bench.flops import _split, kernel_flops
from neuralc.bench.kernels import KernelRow, match_unfused, static_rows
from neuralc.driver import compile_file, tensor_stage
from neuralc.passes import analysis
from neuralc.passes.pipelines import pipeline, tensor_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _check_report(model: Path) -> tuple[int, int, int]:
    """(bytes unfused, bytes at -O2, FLOPs per sample) as ``neuralc check --report`` prints."""
    code, out, err = run_cli("check", model, "--report")
    assert code == 0, err
    moved = re.search(r"bytes moved:\s+([\d,]+) unfused -> ([\d,]+)", out)
    total = re.search(r"total: .*, ([\d,]+) FLOPs per sample", out)
    assert moved and total, out
    return (int(moved[1].replace(",", "")), int(moved[2].replace(",", "")),
            int(total[1].replace(",", "")))


def _kernels(smoke) -> dict:
    assert smoke.code == 0, smoke.err
    (k,) = smoke.result["kernels"]
    assert k["status"] == "ok", k.get("message")
    return k


def test_kernel_bytes_and_flops_equal_check_report(smoke):
    k = _kernels(smoke)
    unfused_bytes, fused_bytes, flops = _check_report(smoke.model)
    assert sum(r["bytes"] for r in k["fused"]["kernels"]) == fused_bytes
    assert sum(r["bytes"] for r in k["unfused"]["kernels"]) == unfused_bytes
    for level in ("fused", "unfused"):
        outside = sum(x["flops"] for x in k[level]["flops_outside_kernels"])
        assert sum(r["flops"] for r in k[level]["kernels"]) + outside == flops  # batch 1


def test_each_kernels_bytes_equal_emit_kernels(smoke):
    """Kernel by kernel: the reads and writes ``--emit kernels`` shows for the cpu target."""
    code, out, _ = run_cli(smoke.model, "--target", "cpu", "--emit", "kernels")
    assert code == 0
    shown = {m[1]: int(m[2].replace(",", "")) + int(m[3].replace(",", ""))
             for m in re.finditer(r"^(fused_\d+)\s.*reads ([\d,]+) B, writes ([\d,]+) B", out,
                                  re.M)}
    rows = {r["name"]: r for r in _kernels(smoke)["fused"]["kernels"]}
    assert shown and {n: r["bytes"] for n, r in rows.items()} == shown
    assert all(r["reads"] + r["writes"] == r["bytes"] for r in rows.values())


def test_every_kernel_is_timed_and_placed_on_the_roofline(smoke):
    k = _kernels(smoke)
    ceilings = smoke.result["ceilings"]
    peak = ceilings["fma"]["gflops"]
    rows = k["fused"]["kernels"]
    assert [r["seconds"] for r in rows] == sorted((r["seconds"] for r in rows), reverse=True)
    for r in rows:
        assert r["seconds"] > 0 and r["calls"] == 1
        assert r["gbs"] == pytest.approx(r["bytes"] / r["seconds"] / 1e9)
        assert r["gflops"] == pytest.approx(r["flops"] / r["seconds"] / 1e9)
        assert r["fma_fraction"] == pytest.approx(r["gflops"] / peak)
        level = next(c for c in ceilings["copy"] if c["level"] == r["bw_level"])
        assert r["bytes"] <= level["bytes"] or level["level"] == "DRAM"
        assert r["bw_fraction"] == pytest.approx(r["gbs"] / level["gbs"])
        assert any(Path(line).name.startswith("tiny.nr:") for line in r["lines"])
    assert k["fused"]["kernel_s"] == pytest.approx(sum(r["seconds"] for r in rows))
    # The kernels are most of a call (the rest: argument checks and the ctypes call).
    assert k["fused"]["kernel_s"] * 1e3 < k["fused"]["call_ms"]["p90"] * 1.5


def test_unfused_kernels_map_onto_fused_ones(smoke):
    k = _kernels(smoke)
    unfused = [r["name"] for r in k["unfused"]["kernels"]]
    mapped = [n for r in k["fused"]["kernels"] for n in r["unfused"]["kernels"]]
    assert sorted(mapped + k["removed_at_opt"]["kernels"]) == sorted(unfused)
    assert len(unfused) > len(k["fused"]["kernels"])  # -O0 is one kernel per op
    conv = next(r for r in k["fused"]["kernels"] if r["ops"][0] == "conv")
    by_name = {r["name"]: r for r in k["unfused"]["kernels"]}
    assert [by_name[n]["ops"] for n in conv["unfused"]["kernels"]][0] == ["conv"]
    assert conv["unfused"]["speedup"] == pytest.approx(
        conv["unfused"]["seconds"] / conv["seconds"])


@pytest.mark.parametrize("name", ["mnist_cnn", "resnet_small"])
def test_static_rows_at_another_batch(name):
    """At batch 3: bytes as the traffic analysis counts them, FLOPs 3x ``check``'s."""
    model = compile_file(EXAMPLES / f"{name}.nr")
    _, _, per_sample = _check_report(EXAMPLES / f"{name}.nr")
    for level in (0, 2):
        tensor, _ = tensor_stage(model, tensor_pipeline(level, "fp32", "cpu")[len(pipeline(level)):])
        rows, outside = static_rows(tensor, model.module, {"batch": 3}, 3)
        assert sum(r.bytes for r in rows) == analysis.bytes_moved(tensor, {"batch": 3})
        assert sum(r.flops for r in rows) + sum(x.flops for x in outside) == 3 * per_sample


def test_repeated_macro_blocks_map_to_their_own_kernels():
    """ResBlock(16) * 2 lowers to the same locations twice; each -O0 conv finds its own
    fused conv kernel, in order."""
    model = compile_file(EXAMPLES / "resnet_small.nr")
    stage = {lv: tensor_stage(model, tensor_pipeline(lv, "fp32", "cpu")[len(pipeline(lv)):])[0]
             for lv in (0, 2)}
    fused, _ = static_rows(stage[2], model.module, {"batch": 1}, 1)
    unfused, _ = static_rows(stage[0], model.module, {"batch": 1}, 1)
    mapping = match_unfused(fused, unfused)
    convs = [mapping[u.name] for u in unfused if u.ops == ["conv"]]
    fused_convs = [r.name for r in fused if "conv" in r.ops]
    assert sorted(convs, key=lambda n: int(n.split("_")[1])) == sorted(
        fused_convs, key=lambda n: int(n.split("_")[1]))
    assert len(set(convs)) == len(convs)


def test_an_op_no_fused_kernel_holds_is_unmatched():
    def row(name: str, keys: list[tuple]) -> KernelRow:
        return KernelRow(name, "k", [], [], 0, 0, 0, keys=keys)

    fused = [row("fused_0", [("tensor.conv", "None", "L1"), ("tensor.binary", "add", "L1")])]
    unfused = [row("u0", [("tensor.conv", "None", "L1")]),
               row("u1", [("tensor.binary", "mul", "L2")]),  # a folded BatchNorm's scale
               row("u2", [("tensor.binary", "mul", "L1")])]  # same layer, other function
    assert match_unfused(fused, unfused) == {"u0": "fused_0", "u1": None, "u2": "fused_0"}


def test_flops_split_is_whole_and_exact():
    assert _split(10, [("a", 1), ("b", 1), ("c", 1)]) in (
        {"a": 4, "b": 3, "c": 3}, {"a": 3, "b": 4, "c": 3}, {"a": 3, "b": 3, "c": 4})
    assert sum(_split(2_560, [("mm", 2_560), ("softmax", 50)]).values()) == 2_560


def test_kernel_flops_follow_the_layers():
    """mnist_cnn at -O2: each conv kernel holds exactly its conv layer's FLOPs."""
    model = compile_file(EXAMPLES / "mnist_cnn.nr")
    tensor, _ = tensor_stage(model, tensor_pipeline(2, "fp32", "cpu")[len(pipeline(2)):])
    per_kernel = kernel_flops(tensor, model.module, {"batch": 2}, 2).per_kernel
    assert per_kernel["fused_0"] == 2 * 389_376  # conv2d's row of `neuralc check`
    assert per_kernel["fused_2"] == 2 * 4_460_544  # conv2d_1
    assert per_kernel["fused_1"] == 2 * 21_632  # the max pool
