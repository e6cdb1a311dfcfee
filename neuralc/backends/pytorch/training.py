"""The training part of a generated module: loss, optimizer, schedule, metrics and train { }.

Keras names are mapped to torch with Keras's defaults (Adam's epsilon is 1e-7, SGD's learning
rate 0.01, ...), schedules to torch schedulers stepped once per batch (Keras counts optimizer
steps), and the losses are written out as Keras computes them. A crossentropy on a softmax (or
sigmoid) output takes the log of the probabilities clipped to [1e-7, 1 - 1e-7], as Keras does,
then the negative log-likelihood, so softmax is never applied twice; a linear output is taken as
logits (F.cross_entropy), a log_softmax output as log-probabilities (F.nll_loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neuralc.backends.pytorch.core import (
    SectionError,
    docstring,
    py,
    py_block,
    rule,
    wrap_line,
)
from neuralc.backends.pytorch.hpo import HPOPlan
from neuralc.frontend.model import CompiledModel
from neuralc.frontend.sections import TrainingConfig
from neuralc.frontend.training_names import (
    OPTIMIZER_ALIASES,
    SCHEDULE_ALIASES,
    canonical_loss,
)
from neuralc.frontend.values import CallValue
from neuralc.ir.core import Op, OpResult, func_body, func_return
from neuralc.layers import catalog

KERAS_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "Adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
             "amsgrad": False},
    "AdamW": {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-7, "amsgrad": False},
    "SGD": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "RMSprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                "centered": False},
    "Adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "Adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
    "Adamax": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
TORCH_OPTIMIZER = {"Nadam": "NAdam"}
CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")

METRIC_NAMES = {
    "accuracy": "accuracy", "acc": "accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "binary_accuracy": "binary_accuracy",
    "mae": "mean_absolute_error", "mean_absolute_error": "mean_absolute_error",
    "mse": "mean_squared_error", "mean_squared_error": "mean_squared_error",
}
# Layers whose 'activation' parameter is what comes out of them.
_OUTPUT_ACTIVATION_OPS = ("dense", "output", "conv1d", "conv2d", "conv3d", "activation",
                          "residual_connection", "conv1d_transpose", "conv2d_transpose",
                          "conv3d_transpose", "depthwise_conv1d", "depthwise_conv2d",
                          "separable_conv1d", "separable_conv2d")


@dataclass
class TrainingCode:
    """The generated training section and the lines that describe it in the docstring."""

    code: str
    summary: list[str] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)


def output_activation(model: CompiledModel) -> str | None:
    """The activation the network's (first) output comes out of, if one is known."""
    ret = func_return(model.module.funcs[0])
    if not ret.operands or not isinstance(ret.operands[0], OpResult):
        return None
    op: Op = ret.operands[0].op
    kind = op.name.split(".", 1)[1]
    if kind in _OUTPUT_ACTIVATION_OPS:
        return op.attributes.get("activation")
    rank = len(op.results[0].type.shape)
    if kind == "softmax":
        return "softmax" if _last_axis_only(op.attributes["axis"], rank) else None
    if kind == "time_distributed":
        spec, params = catalog.inner_layer(op.attributes["layer"])
        inner = spec.op_name.split(".", 1)[1]
        if inner in _OUTPUT_ACTIVATION_OPS:
            return params.get("activation")
        if inner == "softmax":  # its axes count the step's axes, one fewer than the output's
            return "softmax" if _last_axis_only(params["axis"], rank - 1) else None
    return None


def _last_axis_only(axes: list[int], rank: int) -> bool:
    """Whether Keras-style ``axes`` (batch included, negative from the end) of a rank-``rank``
    tensor name exactly its last axis: ``[-1]`` and ``[rank - 1]`` alike."""
    return sorted({a + rank if a < 0 else a for a in axes}) == [rank - 1]


class TrainingWriter:
    def __init__(self, model: CompiledModel, plan: HPOPlan | None, precision: str = "fp32"):
        self.model = model
        self.cfg: TrainingConfig = model.info.training
        self.plan = plan
        # --precision on the command line wins over the .nr file's execution { precision }.
        self.precision = precision if precision != "fp32" else self.cfg.precision
        self.act = output_activation(model)

    # -- values with HPO ------------------------------------------------------------------------
    def _opt_value(self, param: str, value: Any, inner: int | str | None = None) -> str:
        param = OPTIMIZER_ALIASES.get(param, param)
        if self.plan is not None:
            for ref in self.plan.optimizer:
                if ref.param == param and ref.inner == inner:
                    return f"hp[{py(ref.path)}]"
        return repr(value)

    def _train_value(self, key: str, constant: str) -> str:
        """``hp["train.<key>"]`` where the key is searched, else the module's constant."""
        if self.plan is not None and key in self.plan.train:
            return f"hp[{py(self.plan.train[key])}]"
        return constant

    # -- loss -----------------------------------------------------------------------------------
    def loss(self) -> tuple[str, str]:
        """(canonical loss name, the kind of output it reads: probs | logits | log_probs)."""
        name = self.cfg.loss
        params = dict(self.cfg.loss_params)
        if name is None:
            if self.act in ("softmax", "log_softmax"):
                loss = "auto_crossentropy"
            elif self.act == "sigmoid":
                loss = "binary_crossentropy"
            else:
                loss = "mean_squared_error"
        else:
            canon = canonical_loss(name)
            if canon is None:  # neuralc check refuses it first; kept for a config built by hand
                raise SectionError("loss", f"the pytorch target has no loss '{name}'")
            loss = canon
        if params.get("from_logits") is True or self.act in (None, "linear"):
            kind = "logits"
        elif self.act == "log_softmax":
            kind = "log_probs"
        else:
            kind = "probs"
        return loss, kind

    def loss_code(self, loss: str, kind: str) -> list[str]:
        params = self.cfg.loss_params
        ls = params.get("label_smoothing", 0.0)
        doc = {
            "probs": "on probabilities, as Keras: their log, clipped to [EPSILON, 1 - EPSILON], "
                     "then the negative log-likelihood (the model's softmax is applied once)",
            "logits": "on logits (the output layer has no activation): log-softmax inside the "
                      "loss",
            "log_probs": "on the log-probabilities of a log_softmax output",
        }
        lines = ["def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:"]
        if loss == "auto_crossentropy":
            lines += docstring(f"Crossentropy {doc[kind]}; the .nr file names no loss, so "
                               "integer targets are class labels (sparse) and float targets "
                               "one-hot rows (categorical).")
            lines += self._crossentropy("sparse", kind, "    ", guard=True)
            lines += self._crossentropy("categorical", kind, "    ")
            return lines
        if loss == "sparse_categorical_crossentropy":
            lines += docstring(f"{loss} {doc[kind]}.")
            lines += self._crossentropy("sparse", kind, "    ")
        elif loss == "categorical_crossentropy":
            lines += docstring(f"{loss} {doc[kind]}.")
            if ls:
                lines.append(f"    target = target * {1 - ls!r} + {ls!r} / output.shape[-1]")
            lines += self._crossentropy("categorical", kind, "    ")
        elif loss == "binary_crossentropy":
            lines += docstring(f"{loss} {doc[kind if kind != 'log_probs' else 'probs']}.")
            lines.append("    target = target.reshape(output.shape).to(output.dtype)")
            if ls:
                lines.append(f"    target = target * {1 - ls!r} + {0.5 * ls!r}")
            if kind == "logits":
                lines.append("    return F.binary_cross_entropy_with_logits(output, target)")
            else:
                lines += ["    p = output.clamp(EPSILON, 1.0 - EPSILON)",
                          "    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p))"
                          ".mean()"]
        else:
            lines.append(f'    """{loss}, as Keras computes it."""')
            lines.append("    target = target.reshape(output.shape).to(output.dtype)")
            lines += ["    " + line for line in _elementwise_loss(loss, params)]
        return lines

    @staticmethod
    def _crossentropy(which: str, kind: str, ind: str, guard: bool = False) -> list[str]:
        if which == "sparse":
            flat = {"probs": "torch.log(output.clamp(EPSILON, 1.0 - EPSILON))",
                    "log_probs": "output", "logits": "output"}[kind]
            fn = "F.cross_entropy" if kind == "logits" else "F.nll_loss"
            body = [f"{ind}scores = {flat}",
                    f"{ind}classes = scores.shape[-1]",
                    f"{ind}return {fn}(scores.reshape(-1, classes), target.reshape(-1).long())"]
            if guard:
                return [f"{ind}if not target.is_floating_point():",
                        *["    " + b for b in body]]
            return body
        if kind == "probs":  # Keras rescales the rows to sum 1, then clips
            return [f"{ind}probs = output / output.sum(dim=-1, keepdim=True)",
                    f"{ind}log_probs = torch.log(probs.clamp(EPSILON, 1.0 - EPSILON))",
                    f"{ind}return -(target * log_probs).sum(dim=-1).mean()"]
        log_p = {"log_probs": "output", "logits": "F.log_softmax(output, dim=-1)"}[kind]
        return [f"{ind}return -(target * {log_p}).sum(dim=-1).mean()"]

    # -- metrics -------------------------------------------------------------------------------
    def metrics(self, loss: str, kind: str) -> tuple[list[str], list[str], list[str]]:
        """(code of the metric functions, the METRICS entries, names not computed)."""
        code: list[str] = []
        entries: list[str] = []
        skipped: list[str] = []
        written: set[str] = set()
        for name in self.cfg.metrics:
            canon = METRIC_NAMES.get(name.lower())
            if canon is None:
                skipped.append(name)
                continue
            if canon == "accuracy":
                canon = {"sparse_categorical_crossentropy": "sparse_categorical_accuracy",
                         "categorical_crossentropy": "categorical_accuracy",
                         "binary_crossentropy": "binary_accuracy",
                         "auto_crossentropy": "auto_accuracy"}.get(loss, "exact_accuracy")
            if canon not in written:
                code += ["", ""] + self._metric(canon, kind)
                written.add(canon)
            entries.append(f"{py(name)}: {canon}")
        return code, entries, skipped

    @staticmethod
    def _metric(canon: str, kind: str) -> list[str]:
        head = f"def {canon}(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:"
        sparse = "(output.argmax(dim=-1) == target.reshape(output.shape[:-1])).float().mean()"
        categorical = "(output.argmax(dim=-1) == target.argmax(dim=-1)).float().mean()"
        if canon == "sparse_categorical_accuracy":
            return [head, '    """How often the top class is the label (Keras\'s accuracy for '
                    'integer labels)."""', f"    return {sparse}"]
        if canon == "categorical_accuracy":
            return [head, '    """How often the top class is the one-hot target\'s."""',
                    f"    return {categorical}"]
        if canon == "auto_accuracy":
            return [head, '    """Top-class accuracy against integer labels or one-hot rows."""',
                    f"    return {categorical} if target.is_floating_point() else {sparse}"]
        if canon == "binary_accuracy":
            threshold = "0.0" if kind == "logits" else "0.5"
            return [head, f'    """How often (output > {threshold}) matches the 0/1 target."""',
                    f"    return ((output > {threshold}) == (target.reshape(output.shape) > 0.5))"
                    ".float().mean()"]
        if canon == "exact_accuracy":
            return [head, '    """Keras\'s accuracy after a regression loss: exact equality."""',
                    "    return (output == target.reshape(output.shape)).float().mean()"]
        fn = "(output - t).abs()" if canon == "mean_absolute_error" else "(output - t).square()"
        return [head, f'    """{canon} over every element."""',
                "    t = target.reshape(output.shape).to(output.dtype)",
                f"    return {fn}.mean()"]

    # -- optimizer and schedule ---------------------------------------------------------------
    def optimizer(self) -> tuple[list[str], list[str], dict[str, str], str]:
        """(make_optimizer lines, make_scheduler lines, CLIP entries, description)."""
        name = self.cfg.optimizer or "Adam"
        written = self.cfg.optimizer or "none (Adam with Keras's defaults)"
        defaults = KERAS_OPTIMIZERS[name]
        given = dict(self.cfg.optimizer_params)
        positional = given.pop("_args", [])
        if len(positional) > 1:
            raise SectionError("optimizer",
                               f"optimizer {name}: only the learning rate may be positional")
        if positional:
            given["learning_rate"] = positional[0]
        values: dict[str, Any] = dict(defaults)
        clip: dict[str, str] = {}
        for key, value in given.items():
            k = OPTIMIZER_ALIASES.get(key, key)
            if k in CLIPPING:
                clip[k] = self._opt_value(key, value)
            elif k == "betas" and "beta_1" in defaults:
                values["beta_1"], values["beta_2"] = ("beta_1", value[0]), ("beta_2", value[1])
            elif k in defaults or k == "weight_decay":
                values[k] = (key, value)
            else:
                known = ", ".join([*defaults, "weight_decay", *CLIPPING])
                raise SectionError("optimizer", f"optimizer {name}: the pytorch target does "
                                                "not map the "
                                f"parameter '{key}' (known: {known})")

        def v(k: str) -> str:
            item = values[k]
            if isinstance(item, tuple):
                return self._opt_value(item[0], item[1])
            return repr(item)

        lr_item = values["learning_rate"]
        schedule: CallValue | None = None
        if isinstance(lr_item, tuple) and isinstance(lr_item[1], CallValue):
            schedule = lr_item[1]
        kw = []
        if schedule is not None:
            kw.append(f"lr={self._schedule_arg(schedule, lr_item[0], 0, 'initial_learning_rate')}")
        else:
            kw.append(f"lr={v('learning_rate')}")
        if "beta_1" in values:
            kw.append(f"betas=({v('beta_1')}, {v('beta_2')})")
        if "epsilon" in values:
            kw.append(f"eps={v('epsilon')}")
        for k in ("momentum", "nesterov", "amsgrad", "centered", "initial_accumulator_value"):
            if k in values and (isinstance(values[k], tuple) or values[k] not in (0.0, False)
                                or k == "initial_accumulator_value"):
                kw.append(f"{k}={v(k)}")
        if "rho" in values:
            kw.append(f"{'alpha' if name == 'RMSprop' else 'rho'}={v('rho')}")
        if "weight_decay" in values and values["weight_decay"] is not None:
            kw.append(f"weight_decay={v('weight_decay')}")
            if name in ("Adam", "Nadam"):  # Keras's weight decay is decoupled, as AdamW's
                kw.append("decoupled_weight_decay=True")
        cls = TORCH_OPTIMIZER.get(name, name)
        hp = ", hp: dict" if self.plan is not None else ""
        doc = f"{_call_text(name, given)} from the .nr file, with Keras's defaults."
        opt = [f"def make_optimizer(parameters: Any{hp}) -> torch.optim.Optimizer:",
               *docstring(doc),
               *_call_lines(f"torch.optim.{cls}", ["parameters", *kw])]
        sched = self._scheduler(schedule, lr_item[0] if isinstance(lr_item, tuple) else "")
        return opt, sched, clip, written

    def _schedule_arg(self, call: CallValue, param: str, index: int, keyword: str,
                      default: Any = None) -> str:
        """A schedule argument by position or keyword (an HPO there becomes hp[...])."""
        if index < len(call.args):
            return self._opt_value(param, call.args[index], index)
        if keyword in call.kwargs:
            return self._opt_value(param, call.kwargs[keyword], keyword)
        if default is None:
            raise SectionError("optimizer", f"{call.name} needs '{keyword}' (argument {index + 1})")
        return repr(default)

    def _scheduler(self, call: CallValue | None, param: str) -> list[str]:
        hp = ", hp: dict" if self.plan is not None else ""
        head = f"def make_scheduler(optimizer: torch.optim.Optimizer{hp}) -> Any:"
        if call is None:
            return [head, '    """The learning rate is constant."""', "    return None"]
        known = {"ExponentialDecay": ("initial_learning_rate", "decay_steps", "decay_rate",
                                      "staircase"),
                 "StepDecay": ("initial_learning_rate", "decay_steps", "decay_rate"),
                 "CosineDecay": ("initial_learning_rate", "decay_steps", "alpha")}
        aliases = SCHEDULE_ALIASES
        for k in list(call.kwargs):
            if aliases.get(k, k) not in known[call.name]:
                raise SectionError("optimizer", f"{call.name}: the pytorch target does not "
                                                f"map '{k}' "
                                f"(known: {', '.join(known[call.name])})")
        call = CallValue(call.name, call.args, {aliases.get(k, k): v for k, v in
                                                call.kwargs.items()}, call.span)
        steps = self._schedule_arg(call, param, 1, "decay_steps")
        if call.name == "CosineDecay":
            alpha = self._schedule_arg(call, param, 2, "alpha", 0.0)
            return [head,
                    *docstring("CosineDecay: the learning rate follows half a cosine from its "
                               "initial value down to alpha times it over decay_steps batches, "
                               "then stays (Keras's formula; torch's CosineAnnealingLR would "
                               "rise again)."),
                    f"    steps, alpha = {steps}, {alpha}",
                    "    return torch.optim.lr_scheduler.LambdaLR(",
                    "        optimizer, lambda step: (1 - alpha) * 0.5 * (1 + math.cos(math.pi * "
                    "min(step, steps) / steps)) + alpha)"]
        rate = self._schedule_arg(call, param, 2, "decay_rate")
        staircase = call.kwargs.get("staircase", call.args[3] if len(call.args) > 3 else False)
        if call.name == "StepDecay" or staircase:
            return [head, *docstring(f"{call.name}: the learning rate is multiplied by "
                                     "decay_rate every decay_steps batches."),
                    f"    return torch.optim.lr_scheduler.StepLR(optimizer, step_size={steps}, "
                    f"gamma={rate})"]
        return [head, *docstring("ExponentialDecay: lr * decay_rate ** (step / decay_steps), "
                                 "stepped every batch as Keras counts steps."),
                f"    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma={rate} ** "
                f"(1 / {steps}))"]

    # -- the whole section ----------------------------------------------------------------------
    def write(self, inputs: list[tuple[str, tuple, str]], n_outputs: int) -> TrainingCode:
        loss, kind = self.loss()
        opt, sched, clip, opt_text = self.optimizer()
        metric_code, metric_entries, skipped = self.metrics(loss, kind)
        t = self.cfg.train
        epochs, batch = t.get("epochs", 1), t.get("batch_size", 32)
        split = t.get("validation_split", 0.0)
        hp = self.plan is not None
        lines = [
            rule("training, as the .nr file says"),
            *py_block("INPUTS", inputs),
            f"EPOCHS = {epochs!r}",
            f"BATCH_SIZE = {batch!r}",
            f"VALIDATION_SPLIT = {split!r}",
            f"DEVICE = {py(_device(self.cfg.device))}",
            f"PRECISION = {py(self.precision)}  # autocast while training (fp32: none)",
            "EPSILON = 1e-7  # Keras's clipping of probabilities inside crossentropy",
            "CLIP = {" + ", ".join(f"{py(k)}: {val}" for k, val in clip.items()) + "}"
            + ("" if clip else "  # Keras's clipnorm / clipvalue / global_clipnorm: none"),
        ]
        if skipped:
            lines.append(f"NOT_COMPUTED = {py(skipped)}  # metrics this script does not implement")
        lines += ["", ""] + opt + ["", ""] + sched + ["", ""] + self.loss_code(loss, kind)
        lines += metric_code
        lines += ["", "", "METRICS = {" + ", ".join(metric_entries) + "}", "", ""]
        lines += self._train_fn(hp, n_outputs, bool(skipped))
        lines += ["", "",
                  "def evaluate_model(model: nn.Module, dataset: Dataset, *, "
                  "batch_size: int = BATCH_SIZE,",
                  "                   device: str = DEVICE) -> dict[str, float]:",
                  *docstring("The .nr file's loss and metrics of ``model`` on ``dataset`` "
                             "(items as train() takes them), in eval mode."),
                  "    dev = resolve_device(device)",
                  "    model.to(dev)",
                  "    return evaluate(model, dataset, loss_fn, METRICS, batch_size=batch_size, "
                  "device=dev,",
                  "                    precision=PRECISION)"]
        lines = [part for line in lines for part in wrap_line(line)]
        held = f", the last {split:.0%} of the data held out for validation" if split else ""
        loss_text = self.cfg.loss or {"auto_crossentropy": "crossentropy"}.get(loss, loss) \
            + " (the .nr file names none)"
        summary = [
            f"Training: loss {loss_text}, optimizer {opt_text}, metrics "
            f"{', '.join(self.cfg.metrics) or 'none'}; {epochs} "
            f"epoch{'' if epochs == 1 else 's'} of batches of {batch}{held}.",
        ]
        if skipped:
            summary.append(f"Metrics not computed by this script: {', '.join(skipped)}.")
        return TrainingCode("\n".join(lines), summary, {"fit", "evaluate", "resolve_device"})

    def _train_fn(self, hp: bool, n_outputs: int, skipped: bool) -> list[str]:
        if hp:
            sig = ["def train(model: nn.Module, dataset: Dataset, *, epochs: int | None = None,",
                   "          batch_size: int | None = None,",
                   "          validation_split: float | None = None,",
                   "          validation_data: Dataset | None = None, hp: dict | None = None,",
                   "          device: str = DEVICE, seed: int | None = None,",
                   "          log: Callable[[str], None] | None = print",
                   "          ) -> dict[str, list[float]]:"]
        else:
            sig = ["def train(model: nn.Module, dataset: Dataset, *, epochs: int = EPOCHS,",
                   "          batch_size: int = BATCH_SIZE, validation_split: float = "
                   "VALIDATION_SPLIT,",
                   "          validation_data: Dataset | None = None, device: str = DEVICE,",
                   "          seed: int | None = None, log: Callable[[str], None] | None = print",
                   "          ) -> dict[str, list[float]]:"]
        body = docstring("Train ``model`` on ``dataset`` (items ``(x, y)``, or ``(x1, x2, ..., "
                         "y)`` for several inputs) with the .nr file's loss, optimizer, schedule "
                         "and metrics" + (" (``hp``: hyperparameters other than the .nr file's)"
                                          if hp else "") + "; returns the per-epoch history.")
        if n_outputs != 1:
            body.append(f"    raise ValueError('training takes a model with one output; this one "
                        f"has {n_outputs}')")
            return sig + body
        if hp:
            body += ["    hp = {**HPARAMS, **(hp or {})}",
                     "    if epochs is None:",
                     f"        epochs = {self._train_value('epochs', 'EPOCHS')}",
                     "    if batch_size is None:",
                     f"        batch_size = {self._train_value('batch_size', 'BATCH_SIZE')}",
                     "    if validation_split is None:",
                     "        validation_split = "
                     f"{self._train_value('validation_split', 'VALIDATION_SPLIT')}",
                     "    optimizer = make_optimizer(model.parameters(), hp)",
                     "    scheduler = make_scheduler(optimizer, hp)"]
        else:
            body += ["    optimizer = make_optimizer(model.parameters())",
                     "    scheduler = make_scheduler(optimizer)"]
        if skipped:
            body += ["    if log is not None:",
                     "        log('not computed: ' + ', '.join(NOT_COMPUTED))"]
        body += ["    return fit(model, dataset, loss_fn, METRICS, optimizer, scheduler, "
                 "epochs=epochs,",
                 "               batch_size=batch_size, validation_split=validation_split,",
                 "               validation_data=validation_data, device=device, "
                 "precision=PRECISION, clip=CLIP,",
                 "               seed=seed, log=log)"]
        return sig + body


def _elementwise_loss(loss: str, params: dict[str, Any]) -> list[str]:
    """The body of a regression or margin loss on ``output`` and ``target`` (same shape), with
    Keras's formulas: the mean over the last axis, then over the batch."""
    if loss == "kl_divergence":
        return ["t, p = target.clamp(EPSILON, 1.0), output.clamp(EPSILON, 1.0)",
                "return (t * torch.log(t / p)).sum(dim=-1).mean()"]
    if loss == "categorical_hinge":
        return ["pos = (target * output).sum(dim=-1)",
                "neg = ((1.0 - target) * output).amax(dim=-1)",
                "return (neg - pos + 1.0).clamp(min=0.0).mean()"]
    if loss == "cosine_similarity":
        return ["return -(F.normalize(target, dim=-1) * F.normalize(output, dim=-1))"
                ".sum(dim=-1).mean()"]
    # Keras reads 0/1 labels as -1/+1, when every label is 0 or 1.
    margin = ("(1.0 - (2 * target - 1 if bool(((target == 0) | (target == 1)).all()) else target)"
              " * output)")
    exprs = {
        "mean_squared_error": "F.mse_loss(output, target)",
        "mean_absolute_error": "F.l1_loss(output, target)",
        "huber": f"F.huber_loss(output, target, delta={params.get('delta', 1.0)!r})",
        "mean_absolute_percentage_error":
            "100.0 * ((target - output).abs() / target.abs().clamp(min=EPSILON)).mean()",
        "mean_squared_logarithmic_error":
            "(torch.log1p(output.clamp(min=EPSILON)) - torch.log1p(target.clamp(min=EPSILON)))"
            ".square().mean()",
        "log_cosh": "(output - target + F.softplus(-2.0 * (output - target)) - 0.6931471805599453)"
                    ".mean()",
        "poisson": "(output - target * torch.log(output + EPSILON)).mean()",
        "hinge": f"{margin}.clamp(min=0.0).mean()",
        "squared_hinge": f"{margin}.clamp(min=0.0).square().mean()",
    }
    return [f"return {exprs[loss]}"]


def _call_lines(fn: str, args: list[str], indent: str = "    ") -> list[str]:
    """``return fn(args...)`` wrapped under the opening parenthesis within 100 columns."""
    head = f"{indent}return {fn}("
    lines, cur = [], head
    for i, a in enumerate(args):
        piece = a + (", " if i < len(args) - 1 else ")")
        if cur != head and len(cur) + len(piece.rstrip()) > 100:
            lines.append(cur.rstrip())
            cur = " " * len(head) + piece
        else:
            cur += piece
    lines.append(cur)
    return lines


def _device(device: str) -> str:
    return "cuda" if device == "gpu" else device


def _call_text(name: str, params: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        if isinstance(v, CallValue):
            inner = [show(a) for a in v.args] + [f"{k}={show(x)}" for k, x in v.kwargs.items()]
            return f"{v.name}({', '.join(inner)})"
        return repr(v)

    return f"{name}(" + ", ".join(f"{k}={show(v)}" for k, v in params.items()) + ")"


def input_specs(model: CompiledModel, names: list[str]) -> list[tuple[str, tuple, str]]:
    """(name, shape with None for symbolic dims, dtype) of every input, for check_inputs."""
    out = []
    for name, a in zip(names, func_body(model.module.funcs[0]).args):
        shape = tuple(d if isinstance(d, int) else None for d in a.type.shape or ())
        out.append((name, shape, "int64" if a.type.dtype.startswith("i") else "float32"))
    return out
