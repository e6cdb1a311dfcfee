"""Cells in their own processes: a wrong output is caught before timing, a crash or a hang
loses one cell and the run goes on, absent peers and targets that cannot run are listed."""

from __future__ import annotations

import copy
import signal
import sys
from pathlib import Path

import pytest

from neuralc.bench.config import BenchConfig
from neuralc.bench.isolate import run_isolated
from neuralc.bench.plan import Cell, make_plan, target_unavailable
from neuralc.bench.run import assemble, execute, failures
from neuralc.bench.table import format_text
from neuralc.bench.worker import run_job
from neuralc.runtime.weights import init_weights, save_weights

# A process that dies by a signal before it writes any result.
SEGFAULT = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]


def _config(model: Path, targets: list[str], peers: list[str] | None = None) -> BenchConfig:
    return BenchConfig(model=str(model), targets=targets, peers=peers or [], repeat=2,
                       warmup=0, threads=1)


def test_a_wrong_output_and_a_crash_are_reported_and_the_run_goes_on(tiny_model, tmp_path):
    plan = make_plan(_config(tiny_model, ["reference", "onnx"]), tmp_path)
    ref, onnx = plan.cells
    # Weights that differ between cells: the onnx cell gets seed 1, the oracle used seed 0.
    other = tmp_path / "other.safetensors"
    save_weights(other, init_weights(plan.model.module, seed=1))
    assert onnx.spec is not None
    onnx.spec["weights"] = str(other)
    # A cell whose process segfaults, run between the two: the one after it still runs.
    crash = Cell("reference/b1/fp32/crash", "reference", "target", 1, "fp32",
                 spec=copy.deepcopy(ref.spec), worker=SEGFAULT)
    assert crash.spec is not None
    crash.spec["tmp"] = str(tmp_path / "crash")
    plan.cells.insert(1, crash)
    execute(plan)
    result = assemble(plan, None)
    cells = {c["id"]: c for c in result["cells"]}
    assert {k: c["status"] for k, c in cells.items()} == {
        "reference/b1/fp32": "ok", "reference/b1/fp32/crash": "crashed",
        "onnx/b1/fp32": "wrong"}
    wrong = cells["onnx/b1/fp32"]
    assert wrong["error"] > 1e-3 and "over the fp32 bound 1e-03" in wrong["message"]
    assert "latency_ms" not in wrong and wrong["vs_fastest_peer"] is None  # never timed
    assert signal.Signals.SIGSEGV.name in cells["reference/b1/fp32/crash"]["message"]
    assert cells["reference/b1/fp32"]["latency_ms"]["n"] == 2
    assert failures(result) == ["reference/b1/fp32/crash", "onnx/b1/fp32"]
    text = format_text(result)
    assert "  onnx/b1/fp32: wrong: max error " in text
    assert "  reference/b1/fp32/crash: crashed: killed by SIGSEGV" in text


def test_a_hanging_cell_is_killed_at_its_timeout(tiny_model, tmp_path):
    plan = make_plan(_config(tiny_model, ["reference"]), tmp_path)
    (cell,) = plan.cells
    assert cell.spec is not None
    got = run_isolated(cell.spec, tmp_path / "slow", timeout=0.05)
    assert got["status"] == "timeout"
    assert got["message"] == "no result after 0.05 s (the process was killed)"


def test_a_process_that_exits_without_a_result_is_a_crash(tmp_path):
    worker = [sys.executable, "-c", "import sys; print('out of memory, say'); sys.exit(3)"]
    got = run_isolated({"job": "time", "threads": 1}, tmp_path, timeout=60, worker=worker)
    assert got["status"] == "crashed"
    assert got["message"] == "exited with status 3 without a result: out of memory, say"


def test_a_failing_cell_is_an_error_result_not_a_traceback(tiny_model, tmp_path):
    plan = make_plan(_config(tiny_model, ["reference"]), tmp_path)
    spec = dict(plan.cells[0].spec or {}, inputs=[str(tmp_path / "missing.npy")])
    got = run_job(spec)
    assert got["status"] == "error"
    assert got["message"].startswith("FileNotFoundError: ")
    assert "missing.npy" in got["message"]


def test_a_precision_a_peer_cannot_run_is_unsupported(tiny_model, tmp_path):
    cfg = _config(tiny_model, [], ["onnxruntime"])
    cfg.precisions = ["bf16"]
    plan = make_plan(cfg, tmp_path)
    (cell,) = plan.cells
    got = run_job(cell.spec or {})
    assert got["status"] == "unsupported"
    assert "not bf16" in got["message"]


def test_absent_peers_are_listed_with_their_extra(tiny_model, tmp_path, monkeypatch):
    import neuralc.backends.select as select

    real = select.has_module
    monkeypatch.setattr(select, "has_module", lambda name: name != "torch" and real(name))
    plan = make_plan(_config(tiny_model, ["reference"], ["torch", "torch-compile",
                                                         "onnxruntime"]), tmp_path)
    assert plan.absent == [
        {"peer": "torch", "reason": "torch not installed", "install": "pip install 'neuralc[torch]'"},
        {"peer": "torch-compile", "reason": "torch not installed",
         "install": "pip install 'neuralc[torch]'"}]
    assert [c.id for c in plan.cells] == ["reference/b1/fp32", "onnxruntime/b1/fp32"]


def test_a_target_that_cannot_run_here_is_skipped(tiny_model, tmp_path):
    why = target_unavailable("cuda")
    if why is None:
        pytest.skip("this machine runs the cuda target")
    plan = make_plan(_config(tiny_model, ["cuda"]), tmp_path)
    (cuda,) = plan.cells
    assert cuda.spec is None and cuda.result == {"status": "skipped", "message": why}
    result = assemble(plan, None)
    assert result["cells"][0]["status"] == "skipped"
    assert failures(result) == []
