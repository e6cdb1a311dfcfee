"""The smoke run (conftest): exit status, the result file's schema, the tables, the plot."""

from __future__ import annotations

import importlib.util

import pytest

from neuralc.bench.check import BOUNDS

CELL_IDS = ["reference/b1/fp32", "onnx/b1/fp32", "cpu/b1/fp32", "torch/b1/fp32"]


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def test_the_run_succeeds_and_prints_the_summary(smoke):
    assert smoke.code == 0, smoke.err
    assert "Traceback" not in smoke.err
    out = smoke.out
    assert out.startswith("neuralc bench: Tiny (")
    assert "command:  neuralc bench " in out and "--targets reference,onnx,cpu" in out
    assert "machine:  " in out and "1 thread used" in out and "GPU: " in out
    for runner in ("reference", "onnx", "cpu", "torch (peer)"):
        assert any(line.startswith(runner + " ") for line in out.splitlines()), runner
    assert "Kernels of the cpu target, batch 1, fp32: -O2 " in out
    assert "ceilings (1 thread, " in out and "GFLOP/s" in out


def test_result_file_schema(smoke):
    r = smoke.result
    assert r["schema"] == "neuralc-bench/1"
    assert r["command"].startswith("neuralc bench ") and "--repeat 3" in r["command"]
    m = r["machine"]
    assert m["cpu"] and m["arch"] and m["logical_cpus"] >= 1 and isinstance(m["gpus"], list)
    assert r["versions"]["neuralc"] and r["versions"]["python"] and r["versions"]["torch"]
    assert r["model"]["network"] == "Tiny" and len(r["model"]["sha256"]) == 64
    assert r["model"]["inputs"]["1"] == [{"name": "input", "shape": [1, 8, 8, 2],
                                          "dtype": "float32"}]
    assert r["config"]["batches"] == [1] and r["config"]["repeat"] == 3
    assert r["config"]["threads"] == 1
    assert r["check"]["bounds"] == BOUNDS
    assert r["absent"] == []
    assert [c["id"] for c in r["cells"]] == CELL_IDS
    for c in r["cells"]:
        assert c["status"] == "ok", (c["id"], c.get("message"))
        lat = c["latency_ms"]
        assert lat["n"] == 3 and len(c["samples_ms"]) == 3
        assert 0 < lat["p10"] <= lat["median"] <= lat["p90"]
        assert _number(c["first_call_ms"]) and c["first_call_ms"] > 0
        assert c["prepare_s"]["cold"] > 0 and c["prepare_s"]["warm"] > 0
        assert c["peak_rss_bytes"] > 10 << 20  # a Python process with numpy is bigger
        assert 0 <= c["error"] <= BOUNDS["fp32"]
        assert c["sizes"] == {"batch": 1}
        assert _number(c["vs_fastest_peer"])
    by = {c["runner"]: c for c in r["cells"]}
    # The planned arena of the neuralc targets that run the memory plan: the same plan.
    assert by["cpu"]["arena_bytes"] == by["reference"]["arena_bytes"] > 0
    assert by["onnx"]["arena_bytes"] is None and by["torch"]["arena_bytes"] is None
    # The native code cache: the cold preparation compiled, the warm one loaded.
    assert by["cpu"]["cache"] == {"cold": "miss", "warm": "hit"}
    assert by["cpu"]["threads"] == 1
    # The only peer is the fastest peer: its ratio is one.
    assert r["fastest_peer"] == {"b1/fp32": {"peer": "torch",
                                             "median_ms": by["torch"]["latency_ms"]["median"]}}
    assert by["torch"]["vs_fastest_peer"] == pytest.approx(1.0)


def test_markdown_has_the_command_and_the_tables(smoke):
    md = smoke.markdown
    assert md.startswith("`neuralc bench ")
    assert "| runner | batch | prec | status | median ms |" in md
    assert "| cpu | 1 | fp32 | ok |" in md
    assert "| kernel | kind | us | share | bytes | FLOPs |" in md


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib (neuralc[plot]) is not installed")
def test_plot_draws_latency_and_roofline(smoke, tmp_path):
    from neuralc.bench.plot import write_plot

    path = tmp_path / "bench.png"
    write_plot(smoke.result, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width > 1000  # two panels: the roofline is drawn beside the bars


def test_plot_without_matplotlib_is_a_usage_error(smoke, monkeypatch, tmp_path):
    import importlib.util as iu

    from bench_helpers import run_cli

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, _, err = run_cli("bench", smoke.model, "--plot", tmp_path / "p.png")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "neuralc: error: --plot needs matplotlib: pip install 'neuralc[plot]'")
