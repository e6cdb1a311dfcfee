"""Every bundled example on the cuda target, in Triton's interpreter, against the reference:
-O2 and -O3, fp32 and fp16 (cuda_helpers.py states the tolerances); fp32 at -O2 at two sizes
(batch and the other symbolic dims), the others at one. Also ``neuralc run --target cuda``
end to end for one example."""

from __future__ import annotations

from pathlib import Path

import pytest
from cuda_helpers import check_cuda

from neuralc.cli import main
from neuralc.driver import compile_file

EXAMPLES = sorted(Path(__file__).resolve().parents[3].joinpath("examples").glob("*.nr"))
RUNS = {("fp32", 2): ((1, 8), (3, 12)), ("fp32", 3): ((2, 10),), ("fp16", 2): ((2, 10),),
        ("fp16", 3): ((1, 8),)}


@pytest.mark.parametrize(("precision", "level"), list(RUNS), ids=lambda x: str(x))
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_on_cuda_matches_reference(path: Path, precision: str, level: int) -> None:
    check_cuda(compile_file(path), level, precision, RUNS[(precision, level)])


def test_neuralc_run_target_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES[0].parent / "mnist_cnn.nr")
    assert main(["run", path, "--random", "--target", "cuda", "--batch", "3"]) == 0
    cuda = capsys.readouterr().out
    assert main(["run", path, "--random", "--batch", "3"]) == 0
    ref = capsys.readouterr().out
    assert cuda.startswith("output: shape (3, 10) float32")
    assert cuda.split("]")[0][:60] == ref.split("]")[0][:60]
