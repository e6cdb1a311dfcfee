"""Bad inputs to a standalone executable: each is refused with one line and a non-zero exit.

Signature and size errors carry exactly the message neuralc's own checks give
(``bind_inputs`` and ``check_run``), compared here with the Python functions' text; file
errors (.npy files that are malformed, truncated or of a foreign kind) and command-line errors
have the executable's own messages, checked by their key words and exit status.
"""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_helpers import run

from neuralc.runtime.signature import InputError, bind_inputs, select_func
from neuralc.runtime.sizes import check_run

# Models that reach the checks the examples do not: a symbol bound to an expression with a
# range and a step (constraints), a valid convolution that a short sequence empties, and a
# positional table a long sequence overruns.
MODELS = {
    "expr_dims": """
        network R {
          input: { a: (seq, 4), b: (t, 4) }
          dims { seq: 8..16 step 4 }
          layers:
            b: { Concatenate(axis=1) { { } { } } }
            Add(a, b)
        }
    """,
    "short_seq": """
        network Short {
          input: (seq, 4)
          layers:
            Conv1D(8, 5)
            GlobalAveragePooling1D()
        }
    """,
    "positions": """
        network Pos {
          input: (seq,)
          layers:
            Embedding(50, 8)
            PositionalEncoding(16)
            GlobalAveragePooling1D()
        }
    """,
}


@pytest.fixture(scope="module")
def extra(toolchain: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The models above, compiled and built as host executables."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    d = tmp_path_factory.mktemp("bad-input-models")
    out = {}
    for name, text in MODELS.items():
        src = d / f"{name}.nr"
        src.write_text(textwrap.dedent(text))
        model = compile_file(src)
        comp = compile_for_cpu(model)
        built = build_edge(comp, model, init_weights(model.module, seed=0),
                           EdgeRequest("exe", d / name, comp.spec))
        out[name] = {"exe": str(built.binary), "model": model}
    return out


def _model(name: str) -> Any:
    from edge_helpers import ROOT

    from neuralc.driver import compile_file

    return compile_file(ROOT / "examples" / f"{name}.nr")


def python_message(model: Any, arrays: list[np.ndarray]) -> str:
    """What neuralc's own checks say about these inputs (the in-process targets' message)."""
    func = select_func(model.module)
    attrs = model.module.attributes
    try:
        converted, env = bind_inputs(func, arrays, attrs.get("dims"))
        check_run(func, converted, env, attrs.get("dim_constraints"))
    except InputError as e:
        return str(e)
    raise AssertionError("neuralc accepts these inputs")


def exe_run(exe: str, arrays: list[np.ndarray], tmp: Path, *extra: str):
    files = []
    for k, a in enumerate(arrays):
        np.save(tmp / f"x{k}.npy", a)
        files.append(str(tmp / f"x{k}.npy"))
    return run([exe, *files, *extra])


def assert_refused(p: Any, exe: str, message: str, status: int = 1) -> None:
    assert p.returncode == status, (p.returncode, p.stderr)
    assert p.stderr == f"{Path(exe).name}: error: {message}\n"


f32 = np.float32
SIGNATURE_CASES = [
    ("mnist_cnn", [np.zeros((2, 28, 28, 1), np.int64)]),          # ints for floats
    ("mnist_cnn", [np.zeros((2, 28, 28, 1), np.bool_)]),
    ("mnist_cnn", [np.zeros((2, 28, 28, 1), np.complex64)]),      # not numbers
    ("mnist_cnn", [np.array([["a", "bc"]])]),
    ("mnist_cnn", [np.zeros((28, 28, 1), f32)]),                  # rank
    ("mnist_cnn", [np.zeros((2, 28, 27, 1), f32)]),               # a static dim
    ("mnist_cnn", [np.zeros((0, 28, 28, 1), f32)]),               # empty batch: layers
    ("sequence_dims", [np.zeros((2, 4, 32), f32)]),               # below the range
    ("sequence_dims", [np.zeros((65, 8, 32), f32)]),              # above the range
    ("unet_symbolic", [np.zeros((1, 20, 16, 3), f32)]),           # off the step
    ("unet_symbolic", [np.zeros((1, 16, 20, 3), f32)]),
    ("text_embedding", [np.array([[1, 2, 1000]])]),               # token ids
    ("text_embedding", [np.array([[-1, 2, 3]], np.int32)]),
    ("text_embedding", [np.array([[1.0, 2.0]])]),                 # floats for token ids
    ("two_inputs", [np.zeros((2, 32, 32, 3), f32), np.zeros((3, 10), f32)]),  # batch differs
    ("seq2seq_decoder", [np.zeros((1, 300), np.int64), np.zeros((1, 4), np.int64)]),
    ("lstm_text_classifier", [np.zeros((129, 4), np.int64)]),
]


@pytest.mark.parametrize("name,arrays", SIGNATURE_CASES,
                         ids=[f"{n}-{k}" for k, (n, _) in enumerate(SIGNATURE_CASES)])
def test_signature_errors_have_neuralcs_messages(builds: dict[str, Any], name: str,
                                                 arrays: list[np.ndarray],
                                                 tmp_path: Path) -> None:
    exe = builds["host"][name]["exe"]
    assert_refused(exe_run(exe, arrays, tmp_path), exe, python_message(_model(name), arrays))


EXTRA_CASES = [
    ("expr_dims", [np.zeros((1, 10, 4), f32), np.zeros((1, 5, 4), f32)]),   # constraint step
    ("expr_dims", [np.zeros((1, 40, 4), f32), np.zeros((1, 20, 4), f32)]),  # constraint range
    ("expr_dims", [np.zeros((1, 12, 4), f32), np.zeros((1, 7, 4), f32)]),   # compound dim
    ("short_seq", [np.zeros((2, 3, 4), f32)]),                              # layer too small
    ("positions", [np.zeros((1, 20), np.int64)]),                           # table too short
    ("positions", [np.full((1, 4), 50)]),
]


@pytest.mark.parametrize("name,arrays", EXTRA_CASES,
                         ids=[f"{n}-{k}" for k, (n, _) in enumerate(EXTRA_CASES)])
def test_size_checks_have_neuralcs_messages(extra: dict[str, Any], name: str,
                                            arrays: list[np.ndarray], tmp_path: Path) -> None:
    exe = extra[name]["exe"]
    assert_refused(exe_run(exe, arrays, tmp_path), exe,
                   python_message(extra[name]["model"], arrays))


def test_the_same_models_accept_good_sizes(extra: dict[str, Any], tmp_path: Path) -> None:
    for name, arrays in [("expr_dims", [np.ones((1, 12, 4), f32), np.ones((1, 6, 4), f32)]),
                         ("short_seq", [np.ones((2, 5, 4), f32)]),
                         ("positions", [np.full((1, 16), 49)])]:
        p = exe_run(extra[name]["exe"], arrays, tmp_path, "-q")
        assert (p.returncode, p.stderr) == (0, ""), p.stderr


@pytest.mark.parametrize("convert", [
    lambda x: x.astype(np.float64), lambda x: x.astype(np.float16).astype(np.float32),
    lambda x: np.asfortranarray(x), lambda x: x.astype(">f4"),
], ids=["float64", "float16", "fortran-order", "big-endian"])
def test_other_float_layouts_are_converted_as_numpy_does(builds: dict[str, Any], convert: Any,
                                                         tmp_path: Path) -> None:
    from edge_helpers import in_process

    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.runtime.weights import init_weights

    rec = builds["host"]["mnist_cnn"]
    x = convert(np.load(rec["inputs"][0]))
    model = _model("mnist_cnn")
    want = in_process(compile_for_cpu(model), model, init_weights(model.module, seed=0))([x])
    p = exe_run(rec["exe"], [x], tmp_path, "-o", str(tmp_path / "y.npy"))
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want[0])


def test_unsigned_and_narrow_token_ids_are_accepted(builds: dict[str, Any],
                                                    tmp_path: Path) -> None:
    rec = builds["host"]["text_embedding"]
    x = np.load(rec["inputs"][0]) % 100
    outs = []
    for dtype in (np.int64, np.uint16, np.int8):
        p = exe_run(rec["exe"], [x.astype(dtype)], tmp_path, "-o", str(tmp_path / "y.npy"))
        assert p.returncode == 0, p.stderr
        outs.append(np.load(tmp_path / "y.npy"))
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[2], outs[0])


def test_non_finite_values_are_refused_when_asked(builds: dict[str, Any],
                                                  tmp_path: Path) -> None:
    exe = builds["host"]["mnist_cnn"]["exe"]
    x = np.zeros((1, 28, 28, 1), f32)
    x[0, 3, 2, 0] = np.nan
    assert exe_run(exe, [x], tmp_path, "-q").returncode == 0
    assert_refused(exe_run(exe, [x], tmp_path, "--check-finite"), exe,
                   "input 'input' holds a non-finite value (NaN or infinity) at flat index 86")


# -- malformed .npy files -------------------------------------------------------------------


def npy(header: str, data: bytes = b"", version: bytes = b"\x01\x00") -> bytes:
    body = header.encode("latin-1")
    length = struct.pack("<H", len(body)) if version[0] == 1 else struct.pack("<I", len(body))
    return b"\x93NUMPY" + version + length + body + data


GOOD_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 28, 28, 1), }"
GOOD_DATA = bytes(4 * 784)
FILE_CASES = [
    ("empty", b"", "is not a .npy file (save inputs with numpy.save)"),
    ("text", b"hello, world\n", "is not a .npy file"),
    ("magic only", b"\x93NUMPY", "is not a .npy file"),
    ("short header", npy(GOOD_HEADER)[:40], "ends inside its header"),
    ("no data", npy(GOOD_HEADER), "truncated: its shape needs 3136 bytes of data, it has 0"),
    ("short data", npy(GOOD_HEADER, GOOD_DATA[:-1]), "truncated"),
    ("extra data", npy(GOOD_HEADER, GOOD_DATA + b"x"), "1 bytes follow the data"),
    ("version 9", npy(GOOD_HEADER, GOOD_DATA, b"\x09\x00"), "format version"),
    ("not a dict", npy("[1, 2, 3]", GOOD_DATA), "header is not a dict"),
    ("unknown key", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                        bytes(4)), "a key other than"),
    ("missing key", npy("{'descr': '<f4', 'shape': (1,), }", bytes(4)), "lacks descr"),
    ("repeated key", npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                         "'shape': (1,)}", bytes(4)), "a key other than"),
    ("negative dim", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }"),
     "non-negative integers"),
    ("shape not a tuple", npy("{'descr': '<f4', 'fortran_order': False, 'shape': 5, }"),
     "not a tuple"),
    ("one-tuple without comma", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5), }",
                                    bytes(20)), "not a tuple"),
    ("huge shape", npy("{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (4294967296, 4294967296, 4294967296), }"), "more elements"),
    ("rank 33", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1, " * 33 + "), }",
                    bytes(4)), "more than 32 dims"),
    ("bad fortran_order", npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }",
                              bytes(4)), "fortran_order"),
    ("bad descr", npy("{'descr': 'hello', 'fortran_order': False, 'shape': (1,), }", bytes(4)),
     "dtype is not one numpy writes"),
    ("structured", npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                       bytes(4)), "structured array"),
    ("escape in descr", npy("{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,), }"),
     "descr is not a dtype string"),
    ("text after dict", npy(GOOD_HEADER + " junk", GOOD_DATA), "text after the dict"),
    ("header length past the end", b"\x93NUMPY\x01\x00\xff\xff{}", "ends inside its header"),
    ("v2 header length past the end", b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{}",
     "header is longer than 64 KiB"),
]


@pytest.mark.parametrize("case,data,words", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_malformed_files_are_refused_with_one_line(builds: dict[str, Any], case: str,
                                                   data: bytes, words: str,
                                                   tmp_path: Path) -> None:
    exe = builds["host"]["mnist_cnn"]["exe"]
    path = tmp_path / "bad.npy"
    path.write_bytes(data)
    p = run([exe, str(path)])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert p.stderr.startswith(f"mnist_cnn: error: {path} ")
    assert words in p.stderr and p.stderr.count("\n") == 1 and p.stdout == ""


def test_an_object_array_is_refused_as_pickled(builds: dict[str, Any], tmp_path: Path) -> None:
    exe = builds["host"]["mnist_cnn"]["exe"]
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_refused(run([exe, str(tmp_path / "obj.npy")]), exe,
                   f"{tmp_path / 'obj.npy'} holds Python objects, not numbers; neuralc reads "
                   "only numeric .npy arrays")


def test_a_version_2_file_is_read(builds: dict[str, Any], tmp_path: Path) -> None:
    rec = builds["host"]["mnist_cnn"]
    x = np.load(rec["inputs"][0])
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {x.shape}, }}"
    (tmp_path / "v2.npy").write_bytes(npy(header, x.tobytes(), b"\x02\x00"))
    p = run([rec["exe"], str(tmp_path / "v2.npy"), "-o", str(tmp_path / "y.npy")])
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(rec["cpu"][0]))


# -- the command line -----------------------------------------------------------------------


def test_command_line_errors(builds: dict[str, Any], tmp_path: Path) -> None:
    exe = builds["host"]["two_inputs"]["exe"]
    a, b = builds["host"]["two_inputs"]["inputs"]
    cases = [
        ([], 2, "give the model's input: two_inputs x.npy [-o y.npy] (see two_inputs --help)"),
        ([str(tmp_path / "nope.npy"), b], 2, f"no such input file: {tmp_path / 'nope.npy'}"),
        ([str(tmp_path), b], 2, f"cannot read {tmp_path}: not a regular file"),
        ([a], 1, "wrong number of inputs: expected 2 (image, meta), got 1"),
        (["--input", f"image={a}", b], 2, "give every --input as NAME=FILE, or none of them"),
        (["--input", f"image={a}", "--input", f"imag={b}"], 1,
         "unknown input 'imag'; the inputs are: image, meta"),
        (["--input", f"image={a}", "--input", f"image={b}"], 2, "input 'image' is given twice"),
        (["--input", f"image={a}"], 1, "missing input 'meta'; the inputs are: image, meta"),
        ([a, b, "--frobnicate"], 2, "unknown option '--frobnicate' (see two_inputs --help)"),
        ([a, b, "--bench", "many"], 2, "--bench expects a number from 1 to 10000000, got 'many'"),
        ([a, b, "--threads", "-3"], 2, "--threads expects a number from 0 to 1024, got '-3'"),
        ([a, b, "-o", "y1", "-o", "y2"], 2,
         "-o is given 2 times; the model has 1 output (give one -o per output, in order)"),
        ([a, b, "-o"], 2, "-o needs a value"),
        ([a, b, "-o", str(tmp_path / "no" / "y.npy")], 2,
         f"cannot write {tmp_path / 'no' / 'y.npy'}: No such file or directory"),
        (["--bench", "2", "--dim", "height=3"], 2,
         "--dim expects NAME=N with NAME a symbolic dim of the model, got 'height=3'"),
    ]
    for args, status, message in cases:
        p = run([exe, *args])
        assert (p.returncode, p.stderr) == (status, f"two_inputs: error: {message}\n"), args


def test_help_and_environment(builds: dict[str, Any]) -> None:
    exe = builds["host"]["mnist_cnn"]["exe"]
    p = run([exe, "--help"])
    assert p.returncode == 0 and p.stdout.startswith("usage: mnist_cnn [INPUT.npy ...]")
    p = run([exe, "--info"], env={"NEURALC_THREADS": "lots"})
    assert (p.returncode, p.stderr) == (2, "mnist_cnn: error: NEURALC_THREADS must be a number "
                                            "of threads from 0 (one per CPU) to 1024, got 'lots'\n")
