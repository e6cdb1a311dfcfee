"""The recurrent examples against hand-written torch.nn counterparts with the same weight names.

Each counterpart's state_dict keys equal neuralc's weight names for the model, so the
state_dict saved with safetensors loads with ``load_weights`` as it is, and the reference
interpreter then gives torch's output. Stacked recurrent layers are covered by a third model.
Tolerance: rtol=1e-4, atol=1e-5, as the other whole-model tests (float32 rounding accumulates
over the recurrence steps and the chained layers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch_oracle import run_torch

from neuralc.driver import compile_file, compile_source
from neuralc.ir.core import Module
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, load_weights, weight_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RTOL, ATOL = 1e-4, 1e-5


class LSTMTextClassifier(torch.nn.Module):
    """examples/lstm_text_classifier.nr: Embedding -> LSTM (last step) -> Dense softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(5000, 64)
        self.lstm = torch.nn.LSTM(64, 48, batch_first=True)
        self.dense = torch.nn.Linear(48, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embedding(tokens))
        return torch.softmax(self.dense(h[-1]), dim=-1)


class BiGRUTagger(torch.nn.Module):
    """examples/bigru_tagger.nr: Embedding -> bidirectional GRU (sequence) -> per-step Dense."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(3000, 32)
        self.bidirectional = torch.nn.GRU(32, 24, batch_first=True, bidirectional=True)
        self.time_distributed = torch.nn.Linear(48, 9)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        seq, _ = self.bidirectional(self.embedding(tokens))
        return torch.softmax(self.time_distributed(seq), dim=-1)


STACKED = """
network Stacked {
  input: (seq, 6)
  layers:
    LSTM(12, return_sequences=true)
    LSTM(12, return_sequences=true)
    GRU(8)
    Dense(2)
}
"""


class StackedRecurrent(torch.nn.Module):
    """LSTM -> LSTM -> GRU in sequence; torch gives each its own module (names lstm, lstm_1)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 12, batch_first=True)
        self.lstm_1 = torch.nn.LSTM(12, 12, batch_first=True)
        self.gru = torch.nn.GRU(12, 8, batch_first=True)
        self.dense = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.lstm_1(self.lstm(x)[0])
        _, h = self.gru(seq)
        return self.dense(h[-1])


def _float_input(rng: np.random.Generator, batch: int, seq: int) -> np.ndarray:
    return rng.normal(size=(batch, seq, 6)).astype(np.float32)


def _tokens(high: int) -> Callable[[np.random.Generator, int, int], np.ndarray]:
    return lambda rng, batch, seq: rng.integers(0, high, size=(batch, seq)).astype(np.int64)


CASES = [
    ("lstm_text_classifier", LSTMTextClassifier, _tokens(5000)),
    ("bigru_tagger", BiGRUTagger, _tokens(3000)),
    ("stacked", StackedRecurrent, _float_input),
]


def _module(name: str) -> Module:
    if name == "stacked":
        return compile_source(STACKED, "stacked.nr").module
    return compile_file(EXAMPLES / f"{name}.nr").module


@pytest.mark.parametrize("name,make,inputs", CASES, ids=[c[0] for c in CASES])
def test_counterpart_matches_reference(name: str, make: Callable[[], torch.nn.Module],
                                       inputs: Callable, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = make().eval()
    module = _module(name)
    state = model.state_dict()
    specs = weight_specs(module)
    assert list(specs) == list(state)
    assert {k: s.shape for k, s in specs.items()} == {k: tuple(v.shape) for k, v in state.items()}
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    weights = load_weights(path, module)
    rng = np.random.default_rng(7)
    for batch, seq in ((1, 9), (4, 17)):
        x = inputs(rng, batch, seq)
        (ours,) = run_module(module, [x], weights)
        with torch.no_grad():
            theirs = model(torch.from_numpy(x)).numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


EVERY_KIND = """
network EveryKind {
  input: (seq, 6, 5, 2)
  layers:
    ConvLSTM2D(3, 3, padding="same", return_sequences=true, go_backwards=true)
    TimeDistributed(Conv2D(4, 2, "relu"))
    TimeDistributed(Flatten())
    SimpleRNN(8, "relu", return_sequences=true)
    Bidirectional(GRU(5, return_sequences=true, reset_after=false), "ave")
    Bidirectional(LSTM(4, activation="softsign", return_sequences=true), merge_mode="mul")
    GRU(6, recurrent_activation="hard_sigmoid", go_backwards=true, return_state=true)
    Dense(3)
}
"""


def test_torch_oracle_rules_cover_every_recurrent_kind() -> None:
    """The oracle's own loops (what torch.nn lacks) agree with the references too."""
    module = compile_source(EVERY_KIND, "every.nr").module
    weights = init_weights(module, seed=2)
    rng = np.random.default_rng(3)
    for batch, seq in ((1, 4), (3, 7)):
        x = rng.normal(size=(batch, seq, 6, 5, 2)).astype(np.float32)
        (ours,) = run_module(module, [x], weights)
        (theirs,) = run_torch(module, [x], weights)
        assert ours.shape == (batch, 3)
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)
