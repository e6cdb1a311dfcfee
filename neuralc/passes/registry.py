"""Pass registry: names to pass classes, so pipelines and ``--passes=a,b`` can name them."""

from __future__ import annotations

import dataclasses
import importlib

from neuralc.diagnostics import did_you_mean
from neuralc.passes.base import Pass

_PASSES: dict[str, type[Pass]] = {}

# Each module registers its pass on import.
_PASS_MODULES = (
    "neuralc.passes.shape_infer",
    "neuralc.passes.verify",
    "neuralc.passes.lower_to_tensor",
    "neuralc.passes.dce",
    "neuralc.passes.cse",
    "neuralc.passes.canonicalize",
    "neuralc.passes.simplify_inference",
    "neuralc.passes.fold_batchnorm",
    "neuralc.passes.layout",
    "neuralc.passes.fusion",
    "neuralc.passes.precision",
    "neuralc.passes.memory_plan",
    "neuralc.passes.outline_init",
    "neuralc.passes.lower_to_loops",
    "neuralc.passes.schedule",
    "neuralc.passes.pack_weights",
    "neuralc.passes.decompose_attention",
)
_loaded = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    if not cls.name or cls.name in _PASSES:
        raise ValueError(f"pass name {cls.name!r} missing or registered twice")
    _PASSES[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in _PASS_MODULES:
            importlib.import_module(m)


def pass_names() -> list[str]:
    _load()
    return sorted(_PASSES)


def get_pass(name: str) -> type[Pass]:
    _load()
    if name not in _PASSES:
        raise KeyError(
            f"unknown pass '{name}'{did_you_mean(name, _PASSES)}; "
            f"known passes: {', '.join(sorted(_PASSES))}"
        )
    return _PASSES[name]


def _split_top(text: str) -> list[str]:
    """Split ``a,b{x=1,y=2},c`` on the commas outside braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def _option_value(raw: str, current: object) -> object:
    """An option's text as the type of the field's default (bool, int, float or str)."""
    raw = raw.strip()
    if isinstance(current, bool):
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got '{raw}'")
        return raw.lower() == "true"
    try:
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
    except ValueError:
        kind = "an integer" if isinstance(current, int) else "a number"
        raise ValueError(f"expected {kind}, got '{raw}'") from None
    return raw.strip("\"'")


def make_pass(spec: str) -> Pass:
    """``name`` or ``name{option=value,...}`` -> a pass instance (options are its fields).

    Raises KeyError for an unknown pass or option, with a suggestion.
    """
    name, brace, rest = spec.partition("{")
    cls = get_pass(name.strip())
    if not brace:
        return cls()
    if not rest.endswith("}"):
        raise KeyError(f"pass options of '{name}' must end with '}}': {spec}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init} \
        if dataclasses.is_dataclass(cls) else {}
    defaults = cls()
    kwargs: dict[str, object] = {}
    for item in _split_top(rest[:-1]):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in fields:
            raise KeyError(f"pass '{cls.name}' has no option '{key}'"
                           f"{did_you_mean(key, fields)}; options: {', '.join(fields) or 'none'}")
        if not eq:
            raise KeyError(f"pass '{cls.name}' option '{key}' needs a value: {key}=VALUE")
        try:
            kwargs[key] = _option_value(value, getattr(defaults, key))
        except ValueError as e:
            raise KeyError(f"pass '{cls.name}' option '{key}': {e}") from None
    made = cls(**kwargs)
    problem = made.option_problem()
    if problem is not None:
        raise KeyError(f"pass '{cls.name}': {problem}")
    return made


def parse_pipeline(text: str) -> list[Pass]:
    """``"shape-infer,fuse{debug=true}"`` -> pass instances (KeyError on a bad name/option)."""
    return [make_pass(p) for p in _split_top(text)]
