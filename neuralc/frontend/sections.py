"""The non-layer sections of a network: loss, optimizer, metrics, train and execution.

They do not change what the model computes, but they are checked here (known optimizers and
schedules, value ranges) so that a typo is reported at its line now rather than when the
training backend runs, and they are kept in a :class:`TrainingConfig` for that backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from neuralc.diagnostics import DiagnosticEngine, did_you_mean, suggest
from neuralc.frontend import ast
from neuralc.frontend.hparams import HParams
from neuralc.frontend.training_names import (
    LOSSES,
    OPTIMIZER_ALIASES,
    OPTIMIZERS,
    SCHEDULES,
    SEARCH_METHODS,
    TRAIN_KEYS,
    canonical_loss,
    loss_names,
    optimizer_params,
    schedule_params,
)
from neuralc.frontend.values import CallValue, EvalError, evaluate
from neuralc.ir.types import PRECISIONS
from neuralc.location import Location

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
    """A loss every training target knows, by any of its spellings, with its parameters."""
    assert sec.value is not None
    parts = _call_parts(evaluate(sec.value, hp.resolver("loss")))
    if parts is None:
        raise EvalError(
            'loss must be a name or a string such as "categorical_crossentropy"', sec.value.span
        )
    name, params = parts
    canon = canonical_loss(name)
    if canon is None:
        raise EvalError(f"unknown loss '{name}'{_hint(name, loss_names(), LOSSES)}",
                        sec.value.span)
    if "_args" in params:
        raise EvalError(f"give the parameters of loss '{name}' by name, e.g. "
                        f"{name}(from_logits=true)", sec.value.span)
    for p, v in params.items():
        if p not in LOSSES[canon]:
            raise EvalError(f"loss '{name}' has no parameter '{p}'"
                            f"{_hint(p, LOSSES[canon], LOSSES[canon], 'its parameters')}",
                            sec.value.span)
        if isinstance(v, (CallValue, list, tuple, dict)) or v is None:
            # Every loss parameter is a number or a flag; a target cannot write anything else.
            raise EvalError(f"loss '{name}': '{p}' must be a number or true/false, got "
                            f"{_shown(v)}", sec.value.span)
    cfg.loss, cfg.loss_params = name, params


def _optimizer(sec: ast.Section, cfg: TrainingConfig, diags: DiagnosticEngine, hp: HParams) -> None:
    assert sec.value is not None
    node = sec.value
    spans: dict[str, Location] = {}
    if isinstance(node, ast.Call):
        # Each argument's HPO is named by its keyword: optimizer.learning_rate, .momentum, ...
        value: object = CallValue(
            node.name,
            [evaluate(a, hp.resolver(f"optimizer.arg{i}")) for i, a in enumerate(node.args)],
            {k.name: evaluate(k.value, hp.resolver(f"optimizer.{k.name}")) for k in node.kwargs},
            node.span,
        )
        spans = {k.name: k.span for k in node.kwargs}
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
        diags.error(f"unknown optimizer '{name}'{_hint(name, OPTIMIZERS, OPTIMIZERS)}",
                    node.span)
        return
    ok = _optimizer_params(canon, params, spans, node.span, diags)
    lr = params.get("learning_rate", params.get("lr"))
    if lr is None and params.get("_args"):
        lr = params["_args"][0]
    where = spans.get("learning_rate", spans.get("lr", node.span))
    if lr is not None:
        if isinstance(lr, CallValue):
            ok = _schedule(lr, diags) and ok
        elif isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            diags.error(f"learning_rate must be a positive number, got {lr!r}", where)
            ok = False
    if ok:
        cfg.optimizer, cfg.optimizer_params = canon, params


def _shown(v: object) -> str:
    """A value as the .nr file writes it, for messages (a call as ``Foo(...)``)."""
    return f"{v.name}(...)" if isinstance(v, CallValue) else repr(v)


def _hint(name: str, candidates: Iterable[str], listing: Iterable[str],
          label: str = "known") -> str:
    """``; did you mean 'x'?`` for a near miss, else the list of what is known."""
    return did_you_mean(name, candidates) or (f"; {label}: " + (", ".join(listing) or "none"))


def _optimizer_params(name: str, params: dict, spans: dict[str, Location], where: Location,
                      diags: DiagnosticEngine) -> bool:
    """Parameters the optimizer has (Keras names, or PyTorch's lr, eps, betas)."""
    ok = True
    known = optimizer_params(name)
    if len(params.get("_args", [])) > 1:
        diags.error(f"{name} takes one positional argument (the learning rate); give the "
                    "others by name", where)
        ok = False
    for k, v in params.items():
        if k == "_args":
            continue
        at = spans.get(k, where)
        key = OPTIMIZER_ALIASES.get(k, k)
        if k == "betas" and "beta_1" in known:
            if not (isinstance(v, (list, tuple)) and len(v) == 2):
                diags.error(f"{name}: 'betas' is a pair (beta_1, beta_2), got {v!r}", at)
                ok = False
            continue
        if key not in known:
            diags.error(f"{name} has no parameter '{k}'{_hint(k, known, known, 'its parameters')}",
                        at)
            ok = False
        elif key != "learning_rate" and isinstance(v, CallValue):
            # Only the learning rate may be a schedule; a target cannot write another call.
            diags.error(f"{name}: '{k}' must be a value, got {_shown(v)}", at)
            ok = False
        elif key != "learning_rate" and isinstance(v, (int, float)) and not isinstance(v, bool) \
                and v < 0:
            diags.error(f"{name}: '{k}' must not be negative, got {v!r}", at)
            ok = False
    return ok


def _schedule(lr: CallValue, diags: DiagnosticEngine) -> bool:
    """A learning-rate schedule: a known one, its argument count, positive values."""
    if lr.name not in SCHEDULES:
        diags.error(f"unknown learning-rate schedule '{lr.name}'"
                    f"{_hint(lr.name, SCHEDULES, SCHEDULES)}", lr.span)
        return False
    try:
        params = schedule_params(lr.name, lr.args, lr.kwargs)
    except ValueError as e:
        diags.error(str(e), lr.span)
        return False
    for key, v in params.items():
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if key == "staircase":
            bad = "" if isinstance(v, bool) else "true or false"
        elif key == "decay_steps":
            bad = "" if number and float(v).is_integer() and v > 0 else "a positive integer"
        elif key == "alpha":
            bad = "" if number and 0 <= v <= 1 else "a number in [0, 1]"
        else:
            bad = "" if number and v > 0 else "a positive number"
        if bad:
            diags.error(f"{lr.name}: '{key}' must be {bad}, got {v!r}", lr.span)
            return False
    return True


def _metrics(sec: ast.Section, cfg: TrainingConfig, hp: HParams) -> None:
    assert sec.value is not None
    v = evaluate(sec.value, hp.resolver("metrics"))
    items = v if isinstance(v, (list, tuple)) else [v]
    if not all(isinstance(m, str) for m in items):
        raise EvalError('metrics must be a list of names such as ["accuracy"]', sec.value.span)
    cfg.metrics = list(items)


def _train(sec: ast.Section, cfg: TrainingConfig, diags: DiagnosticEngine, hp: HParams) -> None:
    for kw in sec.entries or []:
        if kw.name not in TRAIN_KEYS:
            close = suggest(kw.name, TRAIN_KEYS)
            if close is not None:  # a misspelt key would silently train with the default
                diags.error(f"unknown train setting '{kw.name}'; did you mean '{close}'?",
                            kw.span)
                continue
            diags.warning(f"train setting '{kw.name}' is kept for other tools; no neuralc "
                          f"target reads it (they read {', '.join(TRAIN_KEYS)})", kw.span)
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
        if kw.name == "search_method" and (not isinstance(v, str)
                                           or v.lower() not in SEARCH_METHODS):
            diags.error(f"unknown search_method {v!r}{did_you_mean(str(v), SEARCH_METHODS)}; "
                        f"known: {', '.join(SEARCH_METHODS)}", kw.value.span)
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
