"""Issue 16, code injection: no name from a model reaches generated source unescaped.

A file named ``a\\n        __import__("pathlib").Path("X").touch()\\n#.nr`` made the PyTorch
target write a ``forward()`` that ran that line; ``\"\"\"`` in a metric name made the PyTorch
generator fail on its own output. Here every hostile name (file names with newlines, triple
quotes, backslashes, quotes, NUL, escape sequences, other line breaks, lone surrogates; metric
names and train settings holding the same; layer names Python would normalise, ``ﬁ`` next to
``fi``) carries a payload that creates a sentinel file. Every generated PyTorch and Keras file
must parse, import and compute what neuralc computes, and the sentinel must never appear.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neuralc.backends.base import BackendOptions
from neuralc.backends.registry import get_backend
from neuralc.driver import compile_source
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

PAYLOAD = '__import__("pathlib").Path({sentinel!r}).touch()'
FILE_NAMES = [
    "a\n        {payload}\n#.nr",
    'x"""\n{payload}\n"""y.nr',
    'back\\slash\\"""\\.nr',
    "quo'te\"s '''{payload}'''.nr",
    "nul\x00byte\x1b[31m.nr",
    "sep\u2028line\rcr\x85{payload}.nr",
    "ﬁle²\udcff.nr",
]
# Metric names and a train setting: DSL strings, with escapes and raw control characters.
MODEL = """\
network Hostile {{
  input: (6,)
  layers:
    Dense(5, "relu", name="ﬁ")
    Dense(5, "tanh", name="fi")
    Dense(4, name="x²")
    Output(3, name="ǅ")
  loss: "sparse_categorical_crossentropy"
  optimizer: Adam(learning_rate=0.01)
  metrics: ["accuracy", "m\\"\\"\\"\\n{payload}\\n\\"\\"\\"", "\\\\", "n\x00\x0c\r\u2028{payload}"]
  train {{ epochs: 1  note: "\\"\\"\\"\\n{payload}\\n#" }}
}}
"""


def _generate(tmp_path: Path, target: str, sentinel: Path) -> list[tuple[Path, str, dict]]:
    """(generated file, its hostile model file name, weights) per file name."""
    payload = PAYLOAD.format(sentinel=str(sentinel))
    text = MODEL.format(payload=payload.replace('"', '\\"'))
    backend = get_backend(target)
    assert backend is not None
    out = []
    for i, name in enumerate(FILE_NAMES):
        filename = name.format(payload=payload)
        model = compile_source(text, filename)
        weights = init_weights(model.module, seed=i)
        artifact = backend.emit(model, weights, BackendOptions())
        path = tmp_path / f"{target}_{i}.py"
        artifact.write(str(path))
        source = path.read_text(encoding="utf-8")
        ast.parse(source)  # it parses
        assert payload not in "".join(
            line for line in source.splitlines() if not line.lstrip().startswith(("#", '"'))
            and '"""' not in line and "\\" not in line), f"payload as code in {path}"
        out.append((path, filename, {"model": model, "weights": weights}))
    return out


def _reference(model, weights, x: np.ndarray) -> np.ndarray:
    return run_module(model.module, [x], weights)[0]


def test_generated_pytorch_source_quotes_hostile_names_inertly(tmp_path):
    torch = pytest.importorskip("torch")
    sentinel = tmp_path / "INJECTED"
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    for path, _, made in _generate(tmp_path, "pytorch", sentinel):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # imports
        net = mod.build_model()
        mod.load_weights(net, mod.WEIGHTS_FILE)  # strict: the names survived (ﬁ and fi)
        with torch.no_grad():
            y = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, _reference(made["model"], made["weights"], x), rtol=1e-5,
                                   atol=1e-6)
        assert not sentinel.exists(), f"{path} ran code from a name"


KERAS_SCRIPT = """
import importlib.util, json, sys
import numpy as np
out = {}
for path in json.loads(sys.argv[1]):
    spec = importlib.util.spec_from_file_location("m", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build_model()
    mod.load_weights_safetensors(model, mod.WEIGHTS_FILE)
    x = np.load(sys.argv[2])
    out[path] = model.predict(x, verbose=0).tolist()
print(json.dumps(out))
"""


def test_generated_keras_source_quotes_hostile_names_inertly(tmp_path):
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("keras with the torch backend is not installed")
    sentinel = tmp_path / "INJECTED"
    made = _generate(tmp_path, "keras", sentinel)
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(KERAS_SCRIPT),
                        json.dumps([str(m[0]) for m in made]), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "KERAS_BACKEND": "torch"})
    assert p.returncode == 0, p.stderr[-3000:]
    ys = json.loads(p.stdout.splitlines()[-1])
    for path, _, m in made:
        np.testing.assert_allclose(np.array(ys[str(path)]), _reference(m["model"], m["weights"], x),
                                   rtol=1e-4, atol=1e-5)
    assert not sentinel.exists(), "a generated Keras file ran code from a name"


def test_identifiers_read_back_as_written():
    """Names Python would normalise (NFKC) are normalised first; anything else unusable falls
    back to ASCII: every result is a name Python reads as exactly itself."""
    import unicodedata

    from neuralc.backends import pysource

    for raw, want in [("ﬁ", "fi"), ("x²", "x2"), ("ǅ", "Dž"), ("a-b", "a_b"), ("ok", "ok"),
                      ("名前", "名前"), ("\u2028", "_"), ("Ⅸ", "IX")]:
        got = pysource.identifier(raw)
        assert got == want, raw
        assert unicodedata.normalize("NFKC", got) == got
    assert pysource.comment("a\nb\x00\u2028") == "a\\nb\\x00\\u2028"
    assert pysource.doc('say """hi""" \\') == 'say \\"\\"\\"hi\\"\\"\\" \\\\'
    assert pysource.doc("a\nb\udcff") == "a\\\\nb\\\\udcff"
    assert ast.literal_eval('"""' + pysource.doc('x"""\n\\y\udcff') + '"""') == \
        'x"""\\n\\y\\udcff'
