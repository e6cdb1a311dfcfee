"""The attention examples against equivalent hand-built torch.nn modules, and the .nr forms.

Each torch module names its submodules as neuralc names the layers, so its state_dict keys
equal neuralc's weight names; the state_dict is saved with safetensors, loaded by
neuralc.runtime.weights.load_weights, and the reference interpreter's output is compared with
the module's (float32 torch, rtol=1e-4, atol=1e-5 as the whole-model tests). Torch's
initialisation is perturbed first (LayerNorm weights away from ones) so every weight matters.
The rest checks that the DSL forms compile end to end, cross-attention over a named input
included, and that their mistakes come back as located diagnostics.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from neuralc.cli import main
from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import compile_file, compile_source
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import func_body
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import load_weights, weight_specs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RTOL, ATOL = 1e-4, 1e-5


def sinusoid(t: int, d: int) -> torch.Tensor:
    pos = torch.arange(t, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


def perturb(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Torch's init, then every LayerNorm parameter moved off its ones/zeros start."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".norm" in name or name.startswith("norm") or "layer_normalization" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def check_counterpart(model: CompiledModel, module: torch.nn.Module, inputs: dict[str, np.ndarray],
                      tmp_path: Path) -> None:
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    assert list(state) == list(weight_specs(model.module))
    f = tmp_path / "w.safetensors"
    save_file(state, str(f))
    weights = load_weights(f, model.module)
    (ours,) = run_module(model.module, inputs, weights)
    with torch.no_grad():
        theirs = module(*(torch.from_numpy(x) for x in inputs.values())).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


# -- examples/transformer_classifier.nr ------------------------------------------------------------


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(1000, 32)
        self.transformer_encoder = torch.nn.TransformerEncoderLayer(32, 4, 64, 0.1,
                                                                    batch_first=True)
        self.transformer_encoder_1 = torch.nn.TransformerEncoderLayer(32, 4, 64, 0.1,
                                                                      batch_first=True)
        self.output = torch.nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        x = x + sinusoid(x.shape[1], x.shape[2])
        x = self.transformer_encoder_1(self.transformer_encoder(x))
        return torch.softmax(self.output(x.mean(dim=1)), dim=-1)


@pytest.mark.parametrize("batch,seq", [(1, 7), (4, 19)])
def test_transformer_classifier(batch: int, seq: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = compile_file(EXAMPLES / "transformer_classifier.nr")
    tokens = np.random.default_rng(seq).integers(0, 1000, size=(batch, seq)).astype(np.int64)
    check_counterpart(model, perturb(Classifier(), 1), {"input": tokens}, tmp_path)


# -- examples/vit_tiny.nr -------------------------------------------------------------------------


class ViT(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d = torch.nn.Conv2d(3, 48, 8, stride=8)
        self.positional_encoding = torch.nn.Embedding(16, 48)  # a (16, 48) 'weight' table
        kw = {"activation": "gelu", "norm_first": True, "batch_first": True}
        self.transformer_encoder = torch.nn.TransformerEncoderLayer(48, 4, 96, **kw)
        self.transformer_encoder_1 = torch.nn.TransformerEncoderLayer(48, 4, 96, **kw)
        self.layer_normalization = torch.nn.LayerNorm(48, eps=1e-6)
        self.output = torch.nn.Linear(48, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        patches = self.conv2d(image.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (N, 4, 4, 48)
        x = patches.reshape(image.shape[0], 16, 48) + self.positional_encoding.weight
        x = self.layer_normalization(self.transformer_encoder_1(self.transformer_encoder(x)))
        return torch.softmax(self.output(x.mean(dim=1)), dim=-1)


@pytest.mark.parametrize("batch", [1, 3])
def test_vit_tiny(batch: int, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = compile_file(EXAMPLES / "vit_tiny.nr")
    image = np.random.default_rng(batch).normal(size=(batch, 32, 32, 3)).astype(np.float32)
    check_counterpart(model, perturb(ViT(), 2), {"input": image}, tmp_path)


# -- examples/seq2seq_decoder.nr ----------------------------------------------------------------------


class Seq2Seq(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(500, 32)
        self.transformer_encoder = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.embedding_1 = torch.nn.Embedding(500, 32)
        self.transformer_decoder = torch.nn.TransformerDecoderLayer(32, 4, 64, batch_first=True)
        self.dense = torch.nn.Linear(32, 500)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        s = self.embedding(src)
        memory = self.transformer_encoder(s + sinusoid(s.shape[1], 32))
        t = self.embedding_1(tgt)
        t = t + sinusoid(t.shape[1], 32)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t.shape[1])
        return self.dense(self.transformer_decoder(t, memory, tgt_mask=mask, tgt_is_causal=True))


@pytest.mark.parametrize("batch,src_len,tgt_len", [(1, 9, 4), (3, 5, 12)])
def test_seq2seq_decoder(batch: int, src_len: int, tgt_len: int, tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = compile_file(EXAMPLES / "seq2seq_decoder.nr")
    rng = np.random.default_rng(src_len)
    inputs = {"src": rng.integers(0, 500, size=(batch, src_len)).astype(np.int64),
              "tgt": rng.integers(0, 500, size=(batch, tgt_len)).astype(np.int64)}
    check_counterpart(model, perturb(Seq2Seq(), 3), inputs, tmp_path)
    body = func_body(model.module.funcs[0])
    dec = next(op for op in body.ops if op.name == "graph.transformer_decoder")
    assert dec.operands[1].op.name == "graph.transformer_encoder"  # type: ignore[union-attr]


# -- cross-attention over a named input, Keras Attention, in one network ---------------------------

CROSS = """
network CrossAttend {
  input: { query: (q_len, 16), memory: (m_len, 10) }
  layers:
    query: {
      MultiHeadAttention(2, 8, value_dim=6, context=memory, name="cross")
      MultiHeadAttention(4, 4, causal=true)
      Attention(use_scale=true)
      GlobalAveragePooling1D()
    }
}
"""


class Projections(torch.nn.Module):
    """A hand-written attention block with q_proj/k_proj/v_proj/out_proj, as the layer names."""

    def __init__(self, d_q: int, d_kv: int, heads: int, kd: int, vd: int,
                 causal: bool = False) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q_proj = torch.nn.Linear(d_q, heads * kd)
        self.k_proj = torch.nn.Linear(d_kv, heads * kd)
        self.v_proj = torch.nn.Linear(d_kv, heads * vd)
        self.out_proj = torch.nn.Linear(heads * vd, d_q)

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        def split(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(mem)),
                                           split(self.v_proj(mem)), is_causal=self.causal)
        return self.out_proj(o.transpose(1, 2).flatten(2))


class CrossAttend(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cross = Projections(16, 10, 2, 8, 6)
        self.multi_head_attention = Projections(16, 16, 4, 4, 4, causal=True)
        self.attention = torch.nn.Module()
        self.attention.scale = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.cross(query, memory)
        x = self.multi_head_attention(x, x)
        scores = torch.softmax(self.attention.scale * (x @ x.transpose(1, 2)), dim=-1)
        return (scores @ x).mean(dim=1)


@pytest.mark.parametrize("batch,q_len,m_len", [(1, 3, 8), (2, 10, 5)])
def test_cross_attention_over_a_named_input(batch: int, q_len: int, m_len: int,
                                            tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = compile_source(CROSS, "cross.nr")
    body = func_body(model.module.funcs[0])
    cross = body.ops[0]
    assert cross.name == "graph.multi_head_attention" and cross.attributes["context"] == "memory"
    assert [v.name_hint for v in cross.operands] == ["query", "memory"]
    assert str(cross.results[0].type) == "tensor<batch x q_len x 16 x f32>"
    rng = np.random.default_rng(q_len)
    inputs = {"query": rng.normal(size=(batch, q_len, 16)).astype(np.float32),
              "memory": rng.normal(size=(batch, m_len, 10)).astype(np.float32)}
    check_counterpart(model, CrossAttend().eval(), inputs, tmp_path)


# -- the DSL forms ----------------------------------------------------------------------------------


def errors_of(src: str) -> str:
    with pytest.raises(CompileError) as e:
        compile_source(textwrap.dedent(src), "m.nr")
    return render_all(e.value.diagnostics)


def test_self_and_cross_forms_compile() -> None:
    m = compile_source(textwrap.dedent("""
        network N {
          input: (seq, 24)
          layers:
            enc: { Dense(24) TransformerEncoder(4, 32, norm_first=true) }
            TransformerDecoder(4, 32, enc)
            MultiHeadAttention(2, 12, context=enc)
            Attention(value=enc)
            PositionalEncoding(64, encoding="learned")
            GlobalAveragePooling1D()
        }
    """), "m.nr")
    names = [(op.name, len(op.operands)) for op in func_body(m.module.funcs[0]).ops][:-1]
    assert names == [("graph.dense", 1), ("graph.transformer_encoder", 1),
                     ("graph.transformer_decoder", 2), ("graph.multi_head_attention", 2),
                     ("graph.attention", 2), ("graph.positional_encoding", 1),
                     ("graph.global_average_pooling1d", 1)]


def test_decoder_needs_its_memory() -> None:
    text = errors_of("""
        network N {
          input: (seq, 16)
          layers:
            TransformerDecoder(4, 32)
        }
    """)
    assert "m.nr:5:5: error: TransformerDecoder is missing the required parameter 'memory'" in text
    text = errors_of("""
        network N {
          input: { src: (s, 16), tgt: (t, 16) }
          layers:
            src: { TransformerEncoder(4, 32) }
            tgt: { TransformerDecoder(4, 32, memory=scr) }
        }
    """)
    assert "'memory' names 'scr', which is no input or named branch; did you mean 'src'?" in text


def test_shape_errors_are_located() -> None:
    text = errors_of("""
        network N {
          input: (seq, 30)
          layers:
            TransformerEncoder(4, 32)
        }
    """)
    assert "m.nr:5:5: error: TransformerEncoder needs d_model (the input's last dim, 30) " \
        "divisible by num_heads=4" in text
    text = errors_of("""
        network N {
          input: (seq, 16)
          dims { seq: 1..1024 }
          layers:
            PositionalEncoding(512)
        }
    """)
    assert "max_len=512 is shorter than the sequence: seq may be up to 1024" in text
    assert "raise max_len to 1024" in text
    text = errors_of("""
        network N {
          input: { a: (s, 16), b: (t, 24) }
          layers:
            a: { TransformerDecoder(4, 32, memory=b) }
        }
    """)
    assert "needs memory vectors of d_model=16 features, got memory 'b' (batch, t, 24)" in text


def test_unmerged_branches_are_still_an_error() -> None:
    """Only a branch read by a value parameter counts as merged; the rest must be merged."""
    text = errors_of("""
        network N {
          input: { a: (s, 16), b: (t, 16) }
          layers:
            a: { Dense(16) }
            b: { Dense(16) }
        }
    """)
    assert "ends with unmerged named branches 'a', 'b'" in text
    text = errors_of("""
        network N {
          input: { a: (s, 16), b: (t, 16), c: (u, 16) }
          layers:
            a: { MultiHeadAttention(2, 8, context=b) }
        }
    """)  # input c is unused: no sole output
    assert "ends with unmerged named branches 'a'" in text


def test_check_shows_seq_in_every_sequence_layer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES / "transformer_classifier.nr")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    for name in ("input", "embedding", "positional_encoding", "transformer_encoder",
                 "transformer_encoder_1"):
        assert "(batch, seq" in rows[name], rows[name]
    assert "(batch, seq, 32)" in rows["transformer_encoder_1"]
    assert "dims: seq: 1..512" in out
