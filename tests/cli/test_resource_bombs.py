"""Issue 16, resource bombs: large or deep inputs end in success or a located error, bounded.

One test per reproducer of the issue: long networks (no recursion per layer), macro chains and
fan-outs (capped at the use site), a channel count whose divisors cannot be listed, files too
large or endless, and runs that need more memory than the limit (refused from the shapes,
before any allocation, naming the figure and the layer).
"""

from __future__ import annotations

import os
import sys

import pytest
from hostile import MLP, MNIST, assert_refused, net, run, run_subprocess

from neuralc.ir.core import Op
from neuralc.ir.types import TensorType
from neuralc.limits import LAYERS, MEMORY, NESTING, SOURCE_BYTES


@pytest.mark.parametrize("argv", [["run", "--random"], ["check", "--report"],
                                  ["--emit", "tensor-ir"], ["--emit", "tensor-ir", "-O3"]])
def test_two_hundred_layers_compile_and_run(capsys, tmp_path, argv):
    """Dense(4) * 200 crashed run, check --report and --emit tensor-ir (is_load_time
    recursed once per layer)."""
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4) * 200"))
    code, out, err = run(capsys, argv[0], f, *argv[1:]) if argv[0] in ("run", "check") \
        else run(capsys, f, *argv)
    assert code == 0, err
    assert "Traceback" not in err


def test_load_time_analysis_walks_a_long_chain_without_recursion():
    """A chain 50,000 ops deep (50 times the recursion limit): answered, and in linear time
    when the answers are shared."""
    from neuralc.passes.analysis import is_load_time

    t = TensorType((4,), "f32")
    const = Op("tensor.constant", [], [t], {"value": 1.0})
    chain = [const]
    for _ in range(50_000):
        chain.append(Op("tensor.unary", [chain[-1].results[0]], [t], {"fn": "relu"}))
    memo: dict = {}
    assert is_load_time(chain[-1].results[0], memo)
    assert all(memo[op] for op in chain)
    assert sys.getrecursionlimit() < 50_000


def test_a_thousand_nested_macros_are_refused_at_the_use_site(capsys, tmp_path):
    text = "".join(f"define M{i} {{ M{i + 1}() }}\n" for i in range(1000))
    text += "define M1000 { Dense(4) }\n" + net("    M0()")
    f = tmp_path / "m.nr"
    f.write_text(text)
    first = assert_refused(*run(capsys, "check", f)[::2], 1, "NEURALC_MAX_NESTING")
    # At the use outside any macro (line 1005), not 64 notes down the chain.
    assert first.startswith(f"{f}:1005:5: error: macros are used inside macros more than "
                            f"{NESTING.value} deep")


def test_macro_fan_out_is_capped_before_it_is_expanded(capsys, tmp_path):
    """2^20 layers from 582 bytes: refused at the use site in well under a second of work."""
    text = "define F0 { Dense(4) }\n" + "".join(
        f"define F{k} {{ F{k - 1}() F{k - 1}() }}\n" for k in range(1, 21))
    f = tmp_path / "m.nr"
    f.write_text(text + net("    F20()"))
    code, _, err = run_subprocess("check", f, timeout=60)
    first = assert_refused(code, err, 1, "NEURALC_MAX_LAYERS")
    assert first.startswith(f"{f}:25:5: error: this expands to more than "
                            f"{LAYERS.value:,} layers in all")


def test_bracket_nesting_past_the_limit_is_a_located_error(capsys, tmp_path):
    deep = NESTING.value + 1
    f = tmp_path / "m.nr"
    f.write_text(net("    " + "Residual { " * deep + "Dense(8)" + " }" * deep))
    assert_refused(*run(capsys, "check", f)[::2], 1, f"brackets nest more than "
                   f"{NESTING.value} deep here", "NEURALC_MAX_NESTING")
    ok = NESTING.value - 3  # the network's own braces count too
    f.write_text(net("    " + "Residual { " * ok + "Dense(8)" + " }" * ok))
    code, _, err = run(capsys, "run", f, "--random")
    assert code == 0, err


def test_a_long_operator_chain_is_a_located_error(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text("define A(n) { Dense(" + "+".join(["$n"] * 5000) + ") }\n" + net("    A(1)"))
    assert_refused(*run(capsys, "check", f)[::2], 1, "nests operations more than")


def test_group_normalization_on_a_huge_prime_channel_count_answers_at_once(tmp_path):
    """Listing the divisors of 99999999977 one by one took minutes."""
    f = tmp_path / "m.nr"
    f.write_text(net("    GroupNormalization(groups=7)", inp="(99999999977,)"))
    code, _, err = run_subprocess("check", f, timeout=60)
    assert_refused(code, err, 1, "groups=7 must divide the number of channels 99999999977",
                   "divisors of 99999999977")


def test_a_model_file_over_the_size_limit_is_refused_at_line_1(capsys, tmp_path):
    f = tmp_path / "big.nr"
    line = "    Dense(4)\n"
    f.write_text(net(line * (SOURCE_BYTES.value // len(line) + 1)))
    first = assert_refused(*run(capsys, "check", f)[::2], 1, "NEURALC_MAX_SOURCE_BYTES")
    assert first.startswith(f"{f}:1:1: error: {f} holds {f.stat().st_size:,} bytes")


def test_model_text_over_the_size_limit_is_refused_by_the_api(monkeypatch):
    from neuralc.diagnostics import CompileError
    from neuralc.driver import compile_source

    monkeypatch.setenv("NEURALC_MAX_SOURCE_BYTES", "1K")
    with pytest.raises(CompileError, match="holds 1,100 bytes; the limit is 1 KiB"):
        compile_source(net("    Dense(4)") + "#" * (1100 - len(net("    Dense(4)"))), "m.nr")


def test_a_thousand_syntax_errors_stop_at_the_error_limit(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4))\n" * 1000))
    code, _, err = run(capsys, "check", f)
    assert_refused(code, err, 1)
    assert err.count(": error: ") == 100
    assert err.splitlines()[-2:] == ["note: too many errors: stopped after the first 100 (set "
                                     "NEURALC_MAX_ERRORS to raise it)", "100 errors generated."]


@pytest.mark.parametrize("path", ["/dev/zero", "fifo", "dir"])
def test_endless_or_special_model_files_are_refused_without_reading(tmp_path, path):
    if path == "fifo":
        path = tmp_path / "m.nr"
        os.mkfifo(path)
    elif path == "dir":
        path = tmp_path
    code, _, err = run_subprocess("check", path, timeout=60)
    assert_refused(code, err, 2, "not a regular file")


def test_a_model_whose_weights_cannot_fit_is_refused_before_allocating(capsys, tmp_path):
    """Dense(100000) on 100,000 features: 37 GiB of weights (numpy tried to allocate 74.5)."""
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(100000)", inp="(100000,)"))
    first = assert_refused(*run(capsys, "run", f, "--random")[::2], 1, "NEURALC_MAX_MEMORY")
    assert f"this run needs 37.3 GiB (weights 37.3 GiB, 37.3 GiB of them in Dense 'dense' at " \
           f"{f}:4:5" in first
    for argv in ([f, "--target", "onnx", "-o", tmp_path / "m.onnx"],
                 [f, "--target", "pytorch", "-o", tmp_path / "m.py"]):
        first = assert_refused(*run(capsys, *argv)[::2], 1, "NEURALC_MAX_MEMORY")
        assert f"the weights of this network need 37.3 GiB, 37.3 GiB of them in Dense " \
               f"'dense' at {f}:4:5" in first
    code, out, err = run(capsys, "check", f)  # the table, the figure, and a located warning
    assert code == 0
    assert "memory per run (batch=1): weights 37.3 GiB + activations" in out
    assert f"{f}:4:5: warning: this run needs 37.3 GiB" in err


@pytest.mark.parametrize("argv,words", [
    (["--batch", "100000000"], ["batch=100,000,000: this run needs 9.8 TiB",
                                "MaxPooling2D 'max_pooling2d'"]),
    (["--batch", "20000"], ["batch=20,000: this run needs 2 GiB"]),
])
def test_random_runs_that_cannot_fit_are_refused_from_the_shapes(capsys, monkeypatch, argv,
                                                                 words):
    monkeypatch.setenv("NEURALC_MAX_MEMORY", "1G")  # batch 20,000 of the MNIST CNN needs 2 GiB
    assert_refused(*run(capsys, "run", MNIST, "--random", *argv)[::2], 1, *words)


def test_a_huge_symbolic_dim_is_refused_from_the_shapes(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4)", inp="(seq, 8)"))
    assert_refused(*run(capsys, "run", f, "--random", "--dim",
                        "seq=99999999999999999999")[::2], 1, "activations", "Dense 'dense'")


def test_inputs_that_cannot_fit_are_refused_by_the_api(monkeypatch):
    """The same estimate guards the Python API's calls (check_run)."""
    import numpy as np

    import neuralc
    from neuralc.runtime.signature import InputError

    model = neuralc.compile(str(MLP), target="reference")
    monkeypatch.setenv("NEURALC_MAX_MEMORY", "1M")
    with pytest.raises(InputError, match=r"\(batch=1,024\) this run needs"):
        model(np.zeros((1024, 784), np.float32))


def test_a_bad_limit_setting_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("NEURALC_MAX_MEMORY", "lots")
    assert_refused(*run(capsys, "check", MLP)[::2], 2, "NEURALC_MAX_MEMORY='lots'")
    assert MEMORY.default == 4 << 30


def test_one_layer_past_the_cap_is_refused_at_the_use_that_crosses_it(capsys, tmp_path):
    half = LAYERS.value // 2
    f = tmp_path / "m.nr"
    f.write_text(net(f"    Dense(4) * {half}\n    Dense(4) * {LAYERS.value - half}\n    Dense(2)"))
    first = assert_refused(*run(capsys, "check", f)[::2], 1, "NEURALC_MAX_LAYERS")
    assert first.startswith(f"{f}:6:5: error: this expands to more than")


@pytest.mark.slow
def test_the_largest_network_the_caps_allow_compiles_at_every_level(tmp_path):
    """10,000 layers (Dense(4) * 5000 at -O3 crashed): the graph stage and the -O3 tensor
    pipeline finish, in a fresh process with a generous timeout for slow machines."""
    f = tmp_path / "m.nr"
    f.write_text(net(f"    Dense(4) * {LAYERS.value}"))
    code, out, err = run_subprocess("check", f, timeout=300)
    assert code == 0 and f"total: {LAYERS.value} layers" in out, err[-2000:]
    code, _, err = run_subprocess(f, "--emit", "tensor-ir", "-O3", "-o", tmp_path / "t.nir",
                                  timeout=600)
    assert code == 0, err[-2000:]
    assert (tmp_path / "t.nir").read_text().count('"kernel.fused"') >= LAYERS.value


def test_errors_past_the_limit_are_counted_not_printed(capsys, tmp_path):
    """Lowering reports each of 10,000 bad layers; the CLI prints the first hundred."""
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4, activation=\"nope\") * 150"))
    code, _, err = run(capsys, "check", f)
    assert_refused(code, err, 1, 'unknown activation "nope"')
    assert err.count(": error: ") == 100
    assert err.splitlines()[-2:] == ["50 more errors not shown (set NEURALC_MAX_ERRORS to "
                                     "raise it)", "150 errors generated."]


def test_run_memory_is_the_weights_and_the_most_activations_alive_at_once():
    """MNIST CNN at batch 10: 225,034 float weights; the peak is the first max pooling, where
    the convolution's output (26x26x32) and the pooling's (13x13x32) are both alive."""
    from neuralc.driver import compile_file
    from neuralc.passes.run_memory import run_memory

    mem = run_memory(compile_file(MNIST).module.funcs[0], {"batch": 10})
    assert mem.weights == 225_034 * 4
    assert mem.activations == (26 * 26 * 32 + 13 * 13 * 32) * 4 * 10
    assert mem.peak_at is not None and mem.peak_at.attributes["name"] == "max_pooling2d"
    assert mem.heaviest is not None and mem.heaviest.attributes["name"] == "dense"
    assert mem.over_limit() is None
