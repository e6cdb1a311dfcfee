"""The training vocabulary of the language: losses, optimizers, schedules and ``train`` keys.

One table per fact, read by ``neuralc check`` (frontend/sections.py) and by every training
backend (pytorch, keras), so that what one target accepts the other accepts too, and a typo is
reported at its line by ``check`` rather than by whichever target happens to run first.
"""

from __future__ import annotations

from neuralc.layers.catalog import snake_case

# Canonical loss name (Keras's function name) -> the parameters it takes.
LOSSES: dict[str, tuple[str, ...]] = {
    "sparse_categorical_crossentropy": ("from_logits",),
    "categorical_crossentropy": ("from_logits", "label_smoothing"),
    "binary_crossentropy": ("from_logits", "label_smoothing"),
    "mean_squared_error": (),
    "mean_absolute_error": (),
    "mean_absolute_percentage_error": (),
    "mean_squared_logarithmic_error": (),
    "huber": ("delta",),
    "log_cosh": (),
    "kl_divergence": (),
    "poisson": (),
    "hinge": (),
    "squared_hinge": (),
    "categorical_hinge": (),
    "cosine_similarity": (),
}
# Other spellings: Keras's short names, PyTorch's names. Keras's class names
# (``CategoricalCrossentropy``) are read through their snake case.
LOSS_ALIASES: dict[str, str] = {
    "mse": "mean_squared_error", "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error",
    "kld": "kl_divergence", "kullback_leibler_divergence": "kl_divergence",
    "logcosh": "log_cosh", "huber_loss": "huber", "bce": "binary_crossentropy",
    "cross_entropy": "sparse_categorical_crossentropy",
}

OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam")
# Every optimizer takes these (Keras names); PyTorch spellings are in OPTIMIZER_ALIASES.
COMMON_OPTIMIZER_PARAMS = ("learning_rate", "weight_decay", "clipnorm", "clipvalue",
                           "global_clipnorm")
OPTIMIZER_PARAMS: dict[str, tuple[str, ...]] = {
    "Adam": ("beta_1", "beta_2", "epsilon", "amsgrad"),
    "AdamW": ("beta_1", "beta_2", "epsilon", "amsgrad"),
    "SGD": ("momentum", "nesterov"),
    "RMSprop": ("rho", "momentum", "epsilon", "centered"),
    "Adagrad": ("initial_accumulator_value", "epsilon"),
    "Adadelta": ("rho", "epsilon"),
    "Adamax": ("beta_1", "beta_2", "epsilon"),
    "Nadam": ("beta_1", "beta_2", "epsilon"),
}
OPTIMIZER_ALIASES = {"lr": "learning_rate", "eps": "epsilon"}

# Schedule -> (parameters in positional order, how many are required).
SCHEDULES: dict[str, tuple[tuple[str, ...], int]] = {
    "ExponentialDecay": (("initial_learning_rate", "decay_steps", "decay_rate", "staircase"), 3),
    # Step decay: lr * rate ** floor(step / steps), an ExponentialDecay with a staircase.
    "StepDecay": (("initial_learning_rate", "decay_steps", "decay_rate"), 3),
    "CosineDecay": (("initial_learning_rate", "decay_steps", "alpha"), 2),
}
SCHEDULE_ALIASES = {"initial_lr": "initial_learning_rate", "lr": "initial_learning_rate",
                    "learning_rate": "initial_learning_rate", "step_size": "decay_steps",
                    "drop_every": "decay_steps", "gamma": "decay_rate", "drop_rate": "decay_rate",
                    "factor": "decay_rate"}

# Keys of train { } that a target reads; others are kept (with a warning) for other tools.
TRAIN_KEYS = ("epochs", "batch_size", "validation_split", "search_method")
SEARCH_METHODS = ("random", "bayesian", "grid", "tpe")


def canonical_loss(name: str) -> str | None:
    """The canonical loss for any accepted spelling (``mse``, ``CategoricalCrossentropy``)."""
    for key in (name.lower(), snake_case(name)):
        if key in LOSSES:
            return key
        if key in LOSS_ALIASES:
            return LOSS_ALIASES[key]
    squashed = {k.replace("_", ""): k for k in LOSSES}
    return squashed.get(name.lower().replace("_", ""))


def loss_names() -> list[str]:
    """Every spelling worth suggesting: the canonical names and the short aliases."""
    return [*LOSSES, *LOSS_ALIASES]


def optimizer_params(name: str) -> tuple[str, ...]:
    """The Keras-named parameters of an optimizer (canonical name)."""
    return (*COMMON_OPTIMIZER_PARAMS, *OPTIMIZER_PARAMS[name])


def schedule_params(name: str, args: list, kwargs: dict) -> dict:
    """A schedule's arguments by canonical name; raises ValueError naming the problem."""
    order, required = SCHEDULES[name]
    if len(args) > len(order):
        raise ValueError(f"{name} takes at most {len(order)} arguments ({', '.join(order)}), "
                         f"got {len(args)}")
    params = dict(zip(order, args))
    for k, v in kwargs.items():
        key = SCHEDULE_ALIASES.get(k, k)
        if key not in order:
            from neuralc.diagnostics import did_you_mean

            hint = did_you_mean(k, order) or f"; its parameters: {', '.join(order)}"
            raise ValueError(f"{name} has no parameter '{k}'{hint}")
        if key in params:
            raise ValueError(f"{name}: '{key}' is given twice")
        params[key] = v
    missing = [p for p in order[:required] if p not in params]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)} ({name}"
                         f"({', '.join(order[:required])}))")
    return params
