"""``--hpo``: the model's HPO values become Optuna parameters of a generated ``search``; the
model is rebuilt per trial with sizes that follow the hyperparameters, and the best values are
written back into a copy of the .nr text, which neuralc compiles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_target_helpers import check_parity, generate

from neuralc.backends.base import BackendError
from neuralc.driver import compile_file, compile_source
from neuralc.frontend.hparams import HParams
from neuralc.runtime.weights import weight_specs

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

MACRO_NET = """define Block(units) {
  Dense($units, "relu")
}
network Searched {
  input: (6,)
  layers:
    Block(HPO(choice(4, 8))) * 2
    Dropout(HPO(range(0.1, 0.3, step=0.1)))
    Output(3)
  loss: "sparse_categorical_crossentropy"
  optimizer: SGD(learning_rate=ExponentialDecay(HPO(log_range(0.01, 0.1)), 10, 0.5))
  train { epochs: 2  batch_size: HPO(choice(8, 16))  validation_split: 0.25 }
}
"""


def test_sizes_follow_the_hyperparameters(tmp_path: Path) -> None:
    """build_model(hp) for values other than the defaults equals neuralc compiled with the same
    values (--hparam): the same weight shapes and the same outputs."""
    model = compile_file(EXAMPLES / "hpo.nr")
    module, path = generate(model, tmp_path, hpo=True)
    source = path.read_text()
    assert 'nn.Linear(hp["dense.units"], hp["dense_1.units"])' in source
    hp = {"dense.units": 512, "dense_1.units": 64, "dense_1.activation": "gelu"}
    other = compile_file(EXAMPLES / "hpo.nr", hparams=HParams(hp))
    state = module.build_model(hp).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: s.shape for k, s in weight_specs(other.module).items()}
    check_parity(other, module, tmp_path, hp=hp)
    check_parity(model, module, tmp_path)


def test_conv_filters_flow_into_later_sizes(tmp_path: Path) -> None:
    text = ("network C {\n  input: (6, 6, 2)\n  layers:\n    Conv2D(HPO(choice(3, 5)), 3)\n"
            "    Flatten()\n    Dense(2)\n}\n")
    model = compile_source(text, "c.nr")
    module, path = generate(model, tmp_path, hpo=True)
    assert 'nn.Linear(16 * hp["conv2d.filters"], 2)' in path.read_text()
    other = compile_source(text, "c5.nr", hparams=HParams({"conv2d.filters": 5}))
    check_parity(other, module, tmp_path, hp={"conv2d.filters": 5})


def test_macro_hpo_is_one_search_parameter(tmp_path: Path) -> None:
    model = compile_source(MACRO_NET, "searched.nr")
    module, _ = generate(model, tmp_path, hpo=True)
    space = {p["name"]: p for p in module.SEARCH_SPACE}
    assert space["dense.units"]["paths"] == ["dense.units", "dense_1.units"]
    assert space["dropout.rate"] == {"name": "dropout.rate", "paths": ["dropout.rate"],
                                     "kind": "float", "low": 0.1, "high": 0.3, "step": 0.1,
                                     "log": False}
    assert space["train.batch_size"]["choices"] == [8, 16]
    assert space["optimizer.learning_rate"]["log"] is True
    net = module.build_model({"dense.units": 8, "dense_1.units": 8})
    assert tuple(net.state_dict()["dense_1.weight"].shape) == (8, 8)
    opt = module.make_optimizer(net.parameters(), {**module.HPARAMS,
                                                   "optimizer.learning_rate": 0.05})
    assert opt.defaults["lr"] == 0.05


def test_search_writes_a_best_nr_that_compiles(tmp_path: Path, capsys) -> None:
    """Two quick trials through the command line (in process); the best .nr compiles with
    no HPO left, and holds values from the search spaces."""
    path = tmp_path / "searched.nr"
    path.write_text(MACRO_NET)
    model = compile_file(path)
    module, _ = generate(model, tmp_path, hpo=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x[:, :3].argmax(axis=1))
    best = tmp_path / "best.nr"
    torch.manual_seed(0)
    code = module.main(["search", "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"),
                        "--trials", "2", "--epochs", "1", "--seed", "0", "--device", "cpu",
                        "--write-best", str(best), "--out", str(tmp_path / "best.safetensors")])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("trial 0: dense.units=") and out[1].startswith("trial 1: ")
    assert out[2].startswith("best: ") and out[3] == f"wrote {best}"
    tuned = compile_file(best)
    assert not tuned.info.hparams.uses
    text = best.read_text()
    assert "HPO" not in text and "Block(4) * 2" in text or "Block(8) * 2" in text
    units = tuned.module.funcs[0].regions[0].block.ops[0].attributes["units"]
    assert units in (4, 8)
    assert tuned.info.training.train["batch_size"] in (8, 16)
    lr = tuned.info.training.optimizer_params["learning_rate"].args[0]
    assert 0.01 <= lr <= 0.1


def test_hpo_module_passes_ruff(tmp_path: Path) -> None:
    _, path = generate(compile_source(MACRO_NET, "searched.nr"), tmp_path, hpo=True)
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--line-length",
         "100", "--target-version", "py310", "--select", "E,F,W,I,B,UP,SIM",
         "--ignore", "UP007,SIM102,B905", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("layers,message,where", [
    ("Conv2D(4, HPO(choice(3, 5)))\n    Flatten()",
     "the generated search cannot vary 'conv2d.kernel_size': the code of Conv2D depends on its "
     "value; fix it with --hparam conv2d.kernel_size=VALUE", "k.nr:5:5"),
    ("Dense(4)\n    Add { { Dense(HPO(choice(4, 8))) } { } }",
     "the generated search cannot vary 'dense_1.units': a merge or a residual needs it equal to "
     "a fixed size", "k.nr:1:1"),
])
def test_what_the_search_cannot_vary(layers: str, message: str, where: str,
                                     tmp_path: Path) -> None:
    text = f"network K {{\n  input: (6, 6, 2)\n  layers:\n    Dense(2)\n    {layers}\n}}\n"
    if "Add" in layers:
        text = f"network K {{\n  input: (4,)\n  layers:\n    {layers}\n}}\n"
    model = compile_source(text, "k.nr")
    with pytest.raises(BackendError) as info:
        generate(model, tmp_path, hpo=True)
    (d,) = info.value.diagnostics
    assert d.message == message
    assert str(d.location) == where


def test_hpo_flag_without_hpo_values(tmp_path: Path) -> None:
    model = compile_file(EXAMPLES / "mlp.nr")
    with pytest.raises(BackendError) as info:
        generate(model, tmp_path, hpo=True)
    assert info.value.diagnostics[0].message == \
        "--hpo: the model has no HPO(...) values to search over"


def test_without_the_flag_hpo_models_use_their_values(tmp_path: Path) -> None:
    """Without --hpo the module is plain: the compiled values, no optuna, no search command."""
    model = compile_file(EXAMPLES / "hpo.nr")
    module, path = generate(model, tmp_path)
    source = path.read_text()
    assert "optuna" not in source and "def search" not in source
    assert "nn.Linear(64, 128)" in source
    check_parity(model, module, tmp_path)


def test_train_starts_from_the_compiled_weights_only_where_they_fit(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the .nr file's hyperparameters, ``train`` starts from the weights written beside the
    module; a --hparam that changes sizes starts from PyTorch's initialisers, saying why."""
    from safetensors.numpy import load_file

    model = compile_source(MACRO_NET, "searched.nr")
    module, _ = generate(model, tmp_path, hpo=True)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((8, 6)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 8))
    monkeypatch.setattr(module, "train", lambda model, dataset, **options: {})
    monkeypatch.chdir(tmp_path)
    args = ["train", "--x", "x.npy", "--y", "y.npy", "--device", "cpu"]
    compiled = load_file(str(module.WEIGHTS_FILE))
    assert module.main([*args, "--hparam", "optimizer.learning_rate=0.05"]) == 0
    saved = load_file("searched.trained.safetensors")
    assert all(np.array_equal(saved[k], v) for k, v in compiled.items())
    units = 8 if module.HPARAMS["dense.units"] == 4 else 4
    capsys.readouterr()
    assert module.main([*args, "--hparam", f"dense.units={units}"]) == 0
    assert ("note: not starting from searched.safetensors (its names and shapes do not fit the "
            "model built with these hyperparameters)") in capsys.readouterr().err
    assert load_file("searched.trained.safetensors")["dense.weight"].shape == (units, 6)
