"""The training sections (loss, optimizer, metrics, train) as Keras ``compile``/``fit`` code.

Names follow Keras: a loss is a Keras loss name (``"sparse_categorical_crossentropy"``) or
class (``CategoricalCrossentropy(from_logits=true)``); an optimizer's keywords are Keras's
(PyTorch spellings ``lr``, ``betas``, ``eps`` are translated); schedules become
``keras.optimizers.schedules`` objects, which step once per batch as Keras's do. Anything Keras
would refuse is a located error now, not a crash when the generated file trains.
"""

from __future__ import annotations

from typing import Any

from neuralc.backends import pysource
from neuralc.backends.keras.pycode import Code, call, literal
from neuralc.diagnostics import Diagnostic, did_you_mean
from neuralc.frontend.sections import TrainingConfig
from neuralc.frontend.training_names import (
    OPTIMIZER_ALIASES,
    canonical_loss,
    loss_names,
    optimizer_params,
    schedule_params,
)
from neuralc.frontend.values import CallValue
from neuralc.location import Location

# The language's losses (frontend/training_names.py) as Keras classes.
LOSSES = {
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "categorical_hinge": "CategoricalHinge",
    "cosine_similarity": "CosineSimilarity",
    "hinge": "Hinge",
    "huber": "Huber",
    "kl_divergence": "KLDivergence",
    "log_cosh": "LogCosh",
    "mean_absolute_error": "MeanAbsoluteError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "mean_squared_error": "MeanSquaredError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "poisson": "Poisson",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "squared_hinge": "SquaredHinge",
}
KERAS_KNOWN_ALIASES = {"mse", "mae", "mape", "msle", "kld"}  # keras.losses.get takes these

_TORCH_SPELLINGS = OPTIMIZER_ALIASES
_KERAS_SCHEDULE = {"ExponentialDecay": ("ExponentialDecay", {}),
                   "StepDecay": ("ExponentialDecay", {"staircase": True}),
                   "CosineDecay": ("CosineDecay", {})}


class TrainingError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _fail(message: str, location: Location | None) -> TrainingError:
    return TrainingError(Diagnostic("error", message, location))


def _code(value: Any, where: Location | None) -> str:
    """A learning rate or parameter value as source (a schedule call becomes Keras's)."""
    if isinstance(value, CallValue):
        return schedule_code(value)
    try:
        return literal(value)
    except TypeError:
        raise _fail(f"keras target: cannot write the value {value!r}", where) from None


def schedule_code(v: CallValue) -> str:
    try:
        params = schedule_params(v.name, v.args, v.kwargs)
    except ValueError as e:
        raise _fail(str(e), v.span) from None
    cls, fixed = _KERAS_SCHEDULE[v.name]
    args = {k: Code(_code(val, v.span)) for k, val in params.items()}
    return call(f"keras.optimizers.schedules.{cls}", **args, **fixed)


def loss_code(cfg: TrainingConfig, where: Location | None) -> str | None:
    """The expression of the loss, or None without a loss section."""
    if cfg.loss is None:
        return None
    name = cfg.loss
    params = {k: v for k, v in cfg.loss_params.items() if k != "_args"}
    if "_args" in cfg.loss_params:
        raise _fail(f"give the parameters of loss '{name}' by name, e.g. "
                    f"{name}(from_logits=true)", where)
    snake = canonical_loss(name)
    if snake is None:  # neuralc check refuses it first; kept for a config built by hand
        raise _fail(f"Keras has no loss '{name}'{did_you_mean(name, loss_names())}", where)
    cls = LOSSES[snake]
    if not params:  # Keras's own spelling: the name, or the alias Keras knows too
        return literal(name.lower() if name.lower() in KERAS_KNOWN_ALIASES else snake)
    return call(f"keras.losses.{cls}", **{k: Code(_code(v, where)) for k, v in params.items()})


def optimizer_code(cfg: TrainingConfig, where: Location | None) -> str:
    """The expression constructing the optimizer (Keras's Adam with its defaults if none)."""
    if cfg.optimizer is None:
        return "keras.optimizers.Adam()"
    name = cfg.optimizer
    allowed = optimizer_params(name)
    kwargs: dict[str, Any] = {}
    args = list(cfg.optimizer_params.get("_args", []))
    if len(args) > 1:
        raise _fail(f"{name} takes one positional argument (the learning rate); give the "
                    "others by name", where)
    if args:
        kwargs["learning_rate"] = args[0]
    for k, v in cfg.optimizer_params.items():
        if k == "_args":
            continue
        if k == "betas" and isinstance(v, (list, tuple)) and len(v) == 2:
            kwargs["beta_1"], kwargs["beta_2"] = v
            continue
        key = _TORCH_SPELLINGS.get(k, k)
        if key not in allowed:
            raise _fail(f"keras.optimizers.{name} has no parameter '{k}'"
                        f"{did_you_mean(k, allowed)}", where)
        kwargs[key] = v
    return call(f"keras.optimizers.{name}",
                **{k: Code(_code(v, where)) for k, v in kwargs.items()})


def training_source(cfg: TrainingConfig, where: Location | None) -> str:
    """The training section of the generated module."""
    loss = loss_code(cfg, where)
    optimizer = optimizer_code(cfg, where)
    t = cfg.train
    unused = {k: v for k, v in t.items() if k not in ("epochs", "batch_size", "validation_split")}
    lines = ["# -- training: the loss, optimizer, metrics and train sections " + "-" * 34, ""]
    if unused:
        shown = ", ".join(f"{k}={v!r}" for k, v in unused.items())
        lines.append("# Settings of the train section that Keras's fit does not use: "
                     + pysource.comment(shown))
    lines += [
        f"EPOCHS = {literal(t.get('epochs', 1))}",
        f"BATCH_SIZE = {literal(t.get('batch_size', 32))}",
        f"VALIDATION_SPLIT = {literal(t.get('validation_split', 0.0))}",
        "METRICS = [" + ", ".join(literal(m) for m in cfg.metrics) + "]",
        "",
        "",
        "def make_loss():",
        '    """The loss section, as Keras names it."""',
    ]
    if loss is None:
        lines += ['    raise ValueError(f"{NETWORK} has no loss section; pass loss= to train()")']
    else:
        lines += [f"    return {loss}"]
    lines += [
        "",
        "",
        "def make_optimizer() -> keras.optimizers.Optimizer:",
        '    """The optimizer section (Keras\'s Adam with its defaults where there is none)."""',
        f"    return {optimizer}",
    ]
    return "\n".join(lines) + "\n"
