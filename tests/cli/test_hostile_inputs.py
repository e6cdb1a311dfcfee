"""Issue 16, input and IR files, outputs, flags and messages: one test per reproducer.

Each bad input ends in a one-line error at its place with exit 1 (the model, its weights or
inputs) or 2 (usage); nothing blocks, nothing is silently ignored, no output path is changed.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import struct

import numpy as np
import pytest
from hostile import MLP, assert_refused, net, run, run_subprocess

# -- .npy inputs ------------------------------------------------------------------------------


def _npy(path, header: str, data: bytes, version: int = 1, length: int | None = None) -> None:
    raw = header.encode("latin-1")
    size = len(raw) if length is None else length
    head = struct.pack("<H", size) if version == 1 else struct.pack("<I", size)
    path.write_bytes(b"\x93NUMPY" + bytes([version, 0]) + head + raw + data)


@pytest.mark.parametrize("case,words", [
    ("length4", "its header is not a .npy header"),
    ("v2_4gb", "its header claims 4,294,967,280 bytes, more than a .npy header holds"),
    ("huge_shape", "declares an array of shape (10000000000, 28, 28, 1) (28.5 TiB)"),
    ("truncated", "(6,272 bytes of data), but holds 16 bytes of data"),
    ("past_end", "its header claims 500 bytes, but the file ends"),
    ("objects", "holds Python objects, not numbers"),
    ("strings", "holds <U1 elements, not numbers"),
    ("bad_shape", "its header's shape (-1, 3) is not a tuple of sizes"),
])
def test_npy_files_whose_header_lies_are_refused_before_reading(capsys, tmp_path, case, words):
    """tokenize.TokenError, MemoryError and allocation tracebacks before; now the first
    inconsistency, found from the header and the file's size."""
    f = tmp_path / "x.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 784), }"
    if case == "length4":
        _npy(f, header, b"\0" * 64, length=4)
    elif case == "v2_4gb":
        _npy(f, "{}", b"", version=2, length=0xFFFFFFF0)
    elif case == "huge_shape":
        _npy(f, header.replace("(2, 784)", "(10000000000, 28, 28, 1)"), b"\0" * 16)
    elif case == "truncated":
        _npy(f, header, b"\0" * 16)
    elif case == "past_end":
        _npy(f, header, b"", length=500)
    elif case == "objects":
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "strings":
        np.save(f, np.array(["a", "b"]))
    else:
        _npy(f, header.replace("(2, 784)", "(-1, 3)"), b"")
    assert_refused(*run(capsys, "run", MLP, "--input", f)[::2], 1, words)


def test_npy_files_numpy_writes_are_read_as_numpy_reads_them(tmp_path):
    from neuralc.runtime.npy import read_npy

    for a in (np.arange(6, dtype=np.float64).reshape(2, 3).T, np.zeros((0, 3), np.int8),
              np.array(3.5, np.float32), np.ones((2, 2), bool)):
        np.save(tmp_path / "a.npy", a)
        b = read_npy(tmp_path / "a.npy")
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
        assert b.flags.writeable


@pytest.mark.parametrize("what", ["input", "ir"])
def test_a_fifo_as_input_or_ir_file_does_not_block(tmp_path, what):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    argv = ["run", MLP, "--input", fifo] if what == "input" else ["opt", fifo]
    code, _, err = run_subprocess(*argv, timeout=60)
    assert_refused(code, err, 2, "it is a FIFO, not a regular file")


# -- IR files -----------------------------------------------------------------------------------

GN = """module @G {{
  func.func @G(%x: {t} loc("g.nr":2:10 to 2:19)) -> ({t}) {{
    %0 = "graph.group_normalization"(%x) {{axis = {axis}, center = true, epsilon = 0.001, \
groups = 2, name = "gn", scale = true}} : ({t}) -> {t} loc("g.nr":4:5 to 4:33)
    "func.return"(%0) : ({t}) -> () loc("g.nr":1:1 to 5:2)
  }} loc("g.nr":1:1 to 5:2)
}}
"""


def test_graph_ir_with_attributes_the_catalog_rejects_is_located_in_both_files(capsys,
                                                                             tmp_path):
    """GroupNormalization with axis = 0 raised ShapeError out of lower-to-tensor; the error
    now gives the .nir line and column and the .nr location the op stands for."""
    f = tmp_path / "g.nir"
    f.write_text(GN.format(t="tensor<batch x 8 x 8 x 4 x f32>", axis=0))
    first = assert_refused(*run(capsys, "opt", f, "--passes=lower-to-tensor")[::2], 1)
    assert first == (f"{f}:3:5: error: invalid IR: graph.group_normalization: its operand "
                     "types do not fit it: GroupNormalization cannot use the batch axis "
                     "(axis=0) (the op of g.nr:4:5)")


def test_a_pass_that_meets_unranked_graph_ir_reports_a_located_error(capsys, tmp_path):
    f = tmp_path / "g.nir"
    f.write_text(GN.format(t="tensor<* x f32>", axis=0))
    first = assert_refused(*run(capsys, "opt", f, "--passes=shape-infer,lower-to-tensor")[::2],
                           1, "run shape-infer first")
    assert first.startswith("g.nr:4:5: error: lower-to-tensor needs inferred shapes")


@pytest.mark.parametrize("where", ["attribute", "type", "location"])
def test_ir_nested_past_the_limit_is_a_located_error(capsys, tmp_path, where):
    text = GN.format(t="tensor<batch x 8 x 8 x 4 x f32>", axis=-1)
    if where == "attribute":
        text = text.replace("center = true", "center = " + "[" * 5000 + "]" * 5000)
    elif where == "type":
        text = text.replace("tensor<batch x 8 x 8 x 4", "tensor<batch x 8 x 8 x "
                            + "(" * 3000 + "4" + ")" * 3000, 1)
    else:
        text = text.replace('loc("g.nr":4:5 to 4:33)', "loc(" + "fused[" * 3000 + '"a":1:1'
                            + "]" * 3000 + ")")
    f = tmp_path / "g.nir"
    f.write_text(text)
    first = assert_refused(*run(capsys, "opt", f, "--passes=shape-infer")[::2], 1)
    assert first.startswith(f"{f}:") and "nest" in first


# -- outputs --------------------------------------------------------------------------------------


def test_save_weights_writes_through_a_symlink(capsys, tmp_path):
    link, target = tmp_path / "w.safetensors", tmp_path / "real.safetensors"
    link.symlink_to(target)
    code, _, err = run(capsys, "run", MLP, "--random", "--save-weights", link)
    assert code == 0, err
    assert link.is_symlink() and target.stat().st_size > 900_000


def test_save_weights_to_a_device_writes_through_and_reports_its_error(capsys, tmp_path):
    """/dev/full became a regular file and the write error was never reported. A copy of
    /dev/full in tmp_path (root may make one) keeps the machine's own out of the test."""
    full = tmp_path / "full"
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except (PermissionError, OSError):
        pytest.skip("cannot make a character device here (needs root)")
    for flag in ("--save-weights", "-o"):
        first = assert_refused(*run(capsys, "run", MLP, "--random", flag, full)[::2], 2)
        assert "No space left on device" in first
        assert stat.S_ISCHR(full.stat().st_mode)
    assert not (tmp_path / "full.npy").exists()


def test_a_fifo_nobody_reads_is_refused_as_an_output_without_blocking(tmp_path):
    fifo = tmp_path / "w"
    os.mkfifo(fifo)
    code, _, err = run_subprocess("run", MLP, "--random", "--save-weights", fifo, timeout=60)
    assert_refused(code, err, 2, "it is a FIFO that no process reads")


def test_a_write_error_is_reported_and_leaves_no_file(tmp_path):
    """A file-size limit makes the write fail with EFBIG: reported, exit 2, nothing left."""
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = tmp_path / "w.safetensors"
    code, _, err = run_subprocess("run", MLP, "--random", "--save-weights", out, timeout=120,
                                  preexec=small_files)
    assert_refused(code, err, 2, "cannot write weights to", "File too large")
    assert list(tmp_path.iterdir()) == []


def test_output_goes_exactly_where_it_is_asked(capsys, tmp_path):
    """run -o /dev/full wrote /dev/full.npy: no suffix is added to a path the user gave."""
    code, out, _ = run(capsys, "run", MLP, "--random", "-o", tmp_path / "y.out")
    assert code == 0 and np.load(tmp_path / "y.out").shape == (2, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["y.out"]


# -- flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,words", [
    (["run", "{m}", "--random", "--batch", "129"], "--batch 129: outside the range of batch"),
    (["run", "{m}", "--random", "--dim", "batch=0"], "--dim expects NAME=N"),
    (["{m}", "--print-ir-after", "bogus"], "--print-ir-after bogus: no pass is named 'bogus'"),
    (["{m}", "--print-ir-before", "shape-infr"], "did you mean 'shape-infer'?"),
    (["{m}", "--weights", "{m}"], "--weights has no effect on --emit graph-ir"),
    (["{m}", "--emit", "tensor-ir", "--passes=lower-to-tensor,layout{{target=qq}}"],
     "pass 'layout': unknown target layout 'qq'"),
    (["{m}", "--emit", "tensor-ir", "--passes=lower-to-tensor,precision{{mode=zz}}"],
     "pass 'precision': unknown mode 'zz'"),
    (["{m}", "--emit", "tensor-ir", "--passes=fuse{{debug}}"], "option 'debug' needs a value"),
])
def test_flags_that_would_be_ignored_or_misread_are_usage_errors(capsys, tmp_path, argv,
                                                                  words):
    m = tmp_path / "m.nr"
    m.write_text(net("    Dense(4)", extra="  dims { batch: 1..128 }\n"))
    argv = [a.format(m=m) for a in argv]
    assert_refused(*run(capsys, *argv)[::2], 2, words)


def test_a_batch_inside_the_declared_range_still_runs(capsys, tmp_path):
    m = tmp_path / "m.nr"
    m.write_text(net("    Dense(4)", extra="  dims { batch: 1..128 }\n"))
    code, out, err = run(capsys, "run", m, "--random", "--batch", "128")
    assert code == 0 and "shape (128, 4)" in out, err


# -- weights files ------------------------------------------------------------------------------


def test_non_finite_weights_load_with_a_warning(capsys, tmp_path):
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights, save_weights

    w = init_weights(compile_file(MLP).module)
    w["dense.weight"][0, 0] = np.nan
    w["output.bias"][1] = np.inf
    save_weights(tmp_path / "w.safetensors", w)
    code, _, err = run(capsys, "run", MLP, "--random", "--weights", tmp_path / "w.safetensors")
    assert code == 0
    assert err.splitlines()[0] == ("neuralc: warning: the weights hold NaN or infinite values "
                                   "in dense.weight, output.bias; the outputs they reach will "
                                   "be NaN or infinite")


def test_a_safetensors_header_naming_a_tensor_twice_is_refused(capsys, tmp_path):
    entry = '"dense.bias": {"dtype": "F32", "shape": [1], "data_offsets": [%d, %d]}'
    header = ("{" + entry % (0, 4) + ", " + entry % (4, 8) + "}").encode()
    header += b" " * (-len(header) % 8)
    f = tmp_path / "w.safetensors"
    f.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    assert_refused(*run(capsys, "run", MLP, "--random", "--weights", f)[::2], 1,
                   "names the tensor dense.bias twice in its header")


# -- model files and their messages ---------------------------------------------------------------


def test_a_form_feed_in_a_comment_does_not_shift_the_quoted_line(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text("network N {\n  input: (8,)\n  layers: // a\x0cb\n    Dense(4)\n    Bogus(3)\n}\n")
    code, _, err = run(capsys, "check", f)
    assert_refused(code, err, 1, "unknown layer 'Bogus'")
    assert err.splitlines()[1] == "    5 |     Bogus(3)"


def test_an_unused_dims_entry_is_a_warning_with_a_suggestion(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4)", extra="  dims { seqq: 1..64 }\n", inp="(seq, 8)"))
    code, _, err = run(capsys, "check", f)
    assert code == 0
    assert err.splitlines()[0] == (f"{f}:5:10: warning: dims: no input has a dimension "
                                   "'seqq', so this says nothing; did you mean 'seq'?")


@pytest.mark.parametrize("target", ["keras", "pytorch"])
def test_a_call_where_a_loss_parameter_belongs_is_a_located_error(capsys, tmp_path, target):
    """Keras raised KeyError for loss: Huber(delta=Foo(1)); check accepted it."""
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4)", extra="  loss: Huber(delta=Foo(1))\n"))
    for argv in (["check", f], [f, "--target", target, "-o", tmp_path / "m.py"]):
        first = assert_refused(*run(capsys, *argv)[::2], 1)
        assert first == (f"{f}:5:9: error: loss 'Huber': 'delta' must be a number or "
                         "true/false, got Foo(...)")


def test_an_unclosed_brace_is_noted_where_it_was_left_open(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text("network N {\n  input: (8,)\n  layers:\n    Dense(4) {\n    Dense(2)\n}\n")
    code, _, err = run(capsys, "check", f)
    assert_refused(code, err, 1)
    lines = err.splitlines()
    assert lines[0] == f"{f}:5:13: error: missing '}}' to close '{{'"
    assert lines[3] == f"{f}:4:14: note: '{{' opened here"


def test_a_transposed_name_is_suggested_before_a_longer_one(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text(net("    Dense(4)", extra="  optimizer: Adma(learning_rate=0.1)\n"))
    assert_refused(*run(capsys, "check", f)[::2], 1, "unknown optimizer 'Adma'; did you mean "
                                                      "'Adam'?")


def test_a_missing_input_section_is_the_one_error(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text("network N {\n  layers:\n    Dense(4)\n}\n")
    code, _, err = run(capsys, "check", f)
    assert_refused(code, err, 1, "has no 'input:' section")
    assert err.count("error:") == 1 and "several inputs" not in err


def test_control_characters_in_names_cannot_split_a_message(capsys, tmp_path):
    f = tmp_path / "a\nb\x1b[31m.nr"
    f.write_text(net('    Dense(4, name="x\\ny")'))
    code, _, err = run(capsys, "check", f)
    first = assert_refused(code, err, 1, "\\n")
    assert "\x1b" not in err and first.endswith("must be an identifier (letters, digits, '_')")


def test_a_long_line_is_quoted_around_the_error_not_whole(capsys, tmp_path):
    f = tmp_path / "m.nr"
    f.write_text(net("    " + "Dense(4) " * 500 + "Bogus(3)" + " Dense(4)" * 500))
    code, _, err = run(capsys, "check", f)
    assert_refused(code, err, 1, "unknown layer 'Bogus'")
    quoted, caret = err.splitlines()[1:3]
    assert len(quoted) < 200 and quoted.startswith("    4 | ...") and quoted.endswith("...")
    at = caret.index("^")
    assert quoted[at:at + 5] == "Bogus" and caret[at:].rstrip() == "^~~~~"
