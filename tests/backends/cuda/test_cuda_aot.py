"""Ahead-of-time compilation (no GPU needed): every example's kernels compile for sm_80 and
sm_90 through ``triton.compile(..., target=GPUTarget("cuda", cc, 32))``, fit the
architecture's shared memory, and the fp16 matmuls and convolutions run on tensor cores
(``mma`` in their PTX; ``wgmma`` for the large tiles on sm_90).

Kernels compile in parallel worker processes and are cached between test runs in
``$TMPDIR/neuralc-test-cuda-aot-cache`` (keyed by source, configuration, architecture and
Triton version): a cold cache takes minutes for all examples (marked slow), a warm one seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuralc.backends.cuda.aot import SHARED_LIMIT, compile_program, parse_arch
from neuralc.backends.cuda.compile import compile_for_cuda
from neuralc.cli import main
from neuralc.driver import compile_file

EXAMPLES = sorted(Path(__file__).resolve().parents[3].joinpath("examples").glob("*.nr"))
ARCHS = (80, 90)


def _check(path: Path, precision: str) -> dict:
    comp = compile_for_cuda(compile_file(path), 2, precision)
    compiled = compile_program(comp.program, ARCHS, jobs=2)
    for cc in ARCHS:
        assert set(compiled[cc]) == {k.name for k in comp.program.kernels}
        for k in compiled[cc].values():
            assert k.cubin and k.shared <= SHARED_LIMIT[cc], (k.name, cc, k.shared)
    dots = [k for k in comp.program.kernels if "tl.dot" in k.text]
    for k in dots:
        # 16-bit tiles on the tensor cores; IEEE float32 dots (a recurrence's float32 state,
        # the fp32 models) are FMA loops
        sixteen = any("input_precision" not in d for d in k.text.split("tl.dot(")[1:])
        assert ("mma" in compiled[80][k.name].ptx) == sixteen, k.name
    return {"program": comp.program, "compiled": compiled, "dots": dots}


def test_mlp_compiles_for_sm80_and_sm90_with_tensor_cores() -> None:
    got = _check(Path(EXAMPLES[0]).parent / "mlp.nr", "fp16")
    assert len(got["dots"]) == 3
    for k in got["dots"]:
        assert "mma.sync" in got["compiled"][80][k.name].ptx
        assert "wgmma" not in got["compiled"][80][k.name].ptx
    fp32 = _check(Path(EXAMPLES[0]).parent / "mlp.nr", "fp32")
    for k in fp32["dots"]:  # IEEE float32 dots: FMA, no tensor cores
        assert "mma" not in fp32["compiled"][80][k.name].ptx


def test_large_fp16_tiles_use_wgmma_on_sm90() -> None:
    got = _check(Path(EXAMPLES[0]).parent / "mnist_cnn.nr", "fp16")
    big = [k for k in got["dots"] if k.config.get("BM", 0) >= 64]
    assert big and all("wgmma" in got["compiled"][90][k.name].ptx for k in big)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_compiles_ahead_of_time(path: Path) -> None:
    _check(path, "fp16")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny", "lstm_text_classifier", "unet_symbolic"])
def test_fp32_examples_compile_ahead_of_time(name: str) -> None:
    _check(Path(EXAMPLES[0]).parent / f"{name}.nr", "fp32")


def test_the_cubins_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mlp.cubins"
    model = str(Path(EXAMPLES[0]).parent / "mlp.nr")
    assert main([model, "--target", "cuda", "--precision", "fp16", "--arch", "sm_80,sm_90",
                 "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["architectures"]) == {"sm_80", "sm_90"}
    assert "def fused_0(" in data["source"]
    assert all(k["cubin"] for k in data["architectures"]["sm_90"].values())
    assert "sm_80:" in capsys.readouterr().out


def test_arch_lists() -> None:
    assert parse_arch("sm_80, sm_90,90") == [80, 90]
    with pytest.raises(ValueError, match="not a CUDA architecture"):
        parse_arch("ampere")
