"""The non-layer sections of a network: loss, optimizer, metrics, train and execution.

They do not change what the model computes, but they are checked here (known optimizers and
schedules, value ranges) so that a typo is reported at its line now rather than when the
training backend runs, and they are kept in a :class:`TrainingConfig` for that backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neuralc.diagnostics import DiagnosticEngine, did_you_mean
from neuralc.frontend import ast
from neuralc.frontend.hparams import HParams
from neuralc.frontend.values import CallValue, EvalError, evaluate
from neuralc.ir.types import PRECISIONS

OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam")
SCHEDULES = ("ExponentialDecay", "StepDecay", "CosineDecay")
DEVICES = ("auto", "cpu", "cuda", "gpu")


@dataclass
class TrainingConfig:
    loss: str | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    optimizer: str | None = None
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"


def _call_parts(v: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(v, CallValue):
        params = dict(v.kwargs)
        if v.args:
            params["_args"] = list(v.args)
        return v.name, params
    if isinstance(v, str):
        return v, {}
    return None


def check_sections(net: ast.Network, diags: DiagnosticEngine, hp: HParams) -> TrainingConfig:
    cfg = TrainingConfig()
    for key, sec in net.sections.items():
        try:
            if key == "loss":
                _loss(sec, cfg, hp)
            elif key == "optimizer":
                _optimizer(sec, cfg, diags, hp)
            elif key == "metrics":
                _metrics(sec, cfg, hp)
            elif key == "train":
                _train(sec, cfg, diags, hp)
            elif key == "execution":
                _execution(sec, cfg, diags, hp)
        except EvalError as e:
            diags.error(e.message, e.span)
    return cfg


def _loss(sec: ast.Section, cfg: TrainingConfig, hp: HParams) -> None:
    assert sec.value is not None
    parts = _call_parts(evaluate(sec.value, hp.resolver("loss")))
    if parts is None:
        raise EvalError(
            'loss must be a name or a string such as "categorical_crossentropy"', sec.value.span
        )
    cfg.loss, cfg.loss_params = parts


def _optimizer(sec: ast.Section, cfg: TrainingConfig, diags: DiagnosticEngine, hp: HParams) -> None:
    assert sec.value is not None
    node = sec.value
    if isinstance(node, ast.Call):
        # Each argument's HPO is named by its keyword: optimizer.learning_rate, .momentum, ...
        value: object = CallValue(
            node.name,
            [evaluate(a, hp.resolver(f"optimizer.arg{i}")) for i, a in enumerate(node.args)],
            {k.name: evaluate(k.value, hp.resolver(f"optimizer.{k.name}")) for k in node.kwargs},
            node.span,
        )
    else:
        value = evaluate(node, hp.resolver("optimizer"))
    parts = _call_parts(value)
    if parts is None:
        raise EvalError(
            "optimizer must be a name or a call such as Adam(learning_rate=1e-3)", node.span
        )
    name, params = parts
    canon = next((o for o in OPTIMIZERS if o.lower() == name.lower()), None)
    if canon is None:
        diags.error(f"unknown optimizer '{name}'{did_you_mean(name, OPTIMIZERS)}", node.span)
        return
    lr = params.get("learning_rate", params.get("lr"))
    if lr is not None:
        if isinstance(lr, CallValue):
            if lr.name not in SCHEDULES:
                diags.error(
                    f"unknown learning-rate schedule '{lr.name}'{did_you_mean(lr.name, SCHEDULES)}",
                    lr.span,
                )
        elif isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            diags.error(f"learning_rate must be a positive number, got {lr!r}", node.span)
    cfg.optimizer, cfg.optimizer_params = canon, params


def _metrics(sec: ast.Section, cfg: TrainingConfig, hp: HParams) -> None:
    assert sec.value is not None
    v = evaluate(sec.value, hp.resolver("metrics"))
    items = v if isinstance(v, (list, tuple)) else [v]
    if not all(isinstance(m, str) for m in items):
        raise EvalError('metrics must be a list of names such as ["accuracy"]', sec.value.span)
    cfg.metrics = list(items)


def _train(sec: ast.Section, cfg: TrainingConfig, diags: DiagnosticEngine, hp: HParams) -> None:
    for kw in sec.entries or []:
        node = kw.value
        if kw.name == "batch_size" and isinstance(node, ast.ListValue):
            # A list where a scalar is expected is a choice (DSL.md section 7).
            node = ast.HPO("choice", list(node.items), [], node.span)
        try:
            v = evaluate(node, hp.resolver(f"train.{kw.name}"))
        except EvalError as e:
            diags.error(e.message, e.span)
            continue
        if kw.name in ("epochs", "batch_size") and (
            isinstance(v, bool) or not isinstance(v, int) or v < 1
        ):
            diags.error(f"'{kw.name}' must be a positive integer, got {v!r}", kw.value.span)
            continue
        if kw.name == "validation_split" and (
            isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1
        ):
            diags.error(f"'validation_split' must be a number in [0, 1], got {v!r}", kw.value.span)
            continue
        cfg.train[kw.name] = v


def _execution(sec: ast.Section, cfg: TrainingConfig, diags: DiagnosticEngine, hp: HParams) -> None:
    for kw in sec.entries or []:
        try:
            v = evaluate(kw.value, hp.resolver(f"execution.{kw.name}"))
        except EvalError as e:
            diags.error(e.message, e.span)
            continue
        if kw.name == "device":
            ok = isinstance(v, str) and (
                v.lower() in DEVICES or (v.lower().startswith("cuda:") and v[5:].isdigit())
            )
            if not ok:
                diags.error(
                    f'unknown device {v!r}; expected "auto", "cpu", "cuda" or "cuda:N"',
                    kw.value.span,
                )
                continue
            cfg.device = v.lower()
        elif kw.name == "precision":
            if not isinstance(v, str) or v.lower() not in PRECISIONS:
                hint = did_you_mean(str(v), PRECISIONS)
                diags.error(
                    f"unknown precision {v!r}; expected one of "
                    + ", ".join(f'"{p}"' for p in PRECISIONS)
                    + hint,
                    kw.value.span,
                )
                continue
            cfg.precision = v.lower()
        else:
            diags.warning(
                f"unknown execution setting '{kw.name}' is ignored"
                f"{did_you_mean(kw.name, ('device', 'precision'))}",
                kw.span,
            )
