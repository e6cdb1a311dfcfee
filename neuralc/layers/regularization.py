"""Regularisation layers: identity at inference.

The compiler builds inference graphs; training backends implement the random masks and noise
from these attributes with Keras's semantics (Dropout's ``1 / (1 - rate)`` scaling, SpatialDropout
dropping whole channels, GaussianNoise adding N(0, stddev^2), GaussianDropout multiplying by
N(1, rate / (1 - rate)), AlphaDropout keeping SELU's mean and variance, ActivityRegularization
adding ``l1 * sum|y| + l2 * sum y^2`` to the loss). Their parameters are validated as Keras
does, and a little more strictly where Keras would train with infinite noise (rate = 1 for
GaussianDropout and AlphaDropout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    RATE,
    Float,
    Int,
    LayerSpec,
    Optional_,
    Param,
    ParamError,
    ParamType,
    ShapeRule,
    register,
)
from neuralc.layers.common import SPATIAL_LAYOUT

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value


@dataclass(frozen=True)
class NoiseShape(ParamType):
    """Keras's ``noise_shape``: the mask's shape over the full input, ``None`` = input's size."""

    def convert(self, value: Any, pname: str) -> list[int | None]:
        if isinstance(value, (list, tuple)) and value and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in value
        ):
            return list(value)
        raise self._fail(pname, value, "a tuple of positive integers or None (batch included)")


def _check_noise_shape(layer: str, noise: list[int | None] | None, shape: tuple) -> None:
    if noise is None:
        return
    if len(noise) != len(shape):
        raise ShapeError(
            f"{layer} noise_shape {shape_str(tuple(noise))} has rank {len(noise)}, "
            f"but the input {shape_str(shape)} has rank {len(shape)}",
            "noise_shape counts the batch axis too; write None for it, as Keras does",
        )
    for n, d in zip(noise, shape):
        if n is not None and n != 1 and isinstance(d, int) and n != d:
            raise ShapeError(
                f"{layer} noise_shape {shape_str(tuple(noise))} does not broadcast to the "
                f"input {shape_str(shape)}",
                "each entry must be 1 (share the mask along that axis), None, "
                "or the input size",
            )


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    assert ins[0].shape is not None
    _check_noise_shape("Dropout", attrs["noise_shape"], ins[0].shape)
    return [ins[0]]


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [xs[0]]


def _lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Identity at inference: the result is the input, no tensor op. Each spec also says so
    in ``extra["identity_at_inference"]``, for ``simplify-inference`` on the graph IR."""
    return [xs[0]]


DROPOUT = register(LayerSpec(
    name="Dropout",
    params=(
        Param("rate", RATE, aliases=("p",), doc="fraction of inputs dropped while training"),
        Param("noise_shape", Optional_(NoiseShape()), None,
              doc="shape of the dropout mask (1 = shared along that axis)"),
        Param("seed", Optional_(Int()), None, doc="seed of the dropout mask"),
    ),
    positional=("rate", "noise_shape", "seed"),
    shape=_shape, reference=_reference, lower=_lower,
    extra={"identity_at_inference": True},
    doc="Randomly zeroes inputs while training (scaled by 1 / (1 - rate)); identity at inference.",
    example="Dropout(0.5)",
))


SEED = Param("seed", Optional_(Int()), None, doc="seed of the random mask or noise")


# -- SpatialDropout1D/2D/3D --------------------------------------------------------------------

_SPATIAL_NAMES = {n: f"SpatialDropout{n}D" for n in (1, 2, 3)}


def _spatial_dropout_shape(n: int) -> ShapeRule:
    """The rank check of SpatialDropout{n}D (Keras's InputSpec(ndim=n + 2))."""
    layer = _SPATIAL_NAMES[n]

    def rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        assert ins[0].shape is not None
        rank = len(ins[0].shape)
        if rank != n + 2:
            other = _SPATIAL_NAMES.get(rank - 2)
            hint = (f"use {other} for an input of rank {rank}" if other else
                    "use Dropout, which accepts any rank")
            raise ShapeError(f"{layer} expects input {SPATIAL_LAYOUT[n][0]}, got "
                             f"{shape_str(ins[0].shape)}", hint)
        return [ins[0]]

    return rule


def _spatial_dropout(n: int) -> LayerSpec:
    what = {1: "time steps", 2: "pixels", 3: "voxels"}[n]
    return register(LayerSpec(
        name=_SPATIAL_NAMES[n],
        params=(
            Param("rate", RATE, aliases=("p",), doc="fraction of channels dropped while training"),
            SEED,
        ),
        # Keras: SpatialDropout1D(rate, seed), 2D/3D(rate, data_format, seed); data_format
        # has no place in a channels-last language, so seed is keyword-only there.
        positional=("rate", "seed") if n == 1 else ("rate",),
        shape=_spatial_dropout_shape(n), reference=_reference, lower=_lower,
        extra={"identity_at_inference": True},
        doc=f"Drops whole channels (the same for all {what}) while training; identity at "
            "inference.",
        example=f"SpatialDropout{n}D(0.2)",
    ))


SPATIAL_DROPOUT_1D = _spatial_dropout(1)
SPATIAL_DROPOUT_2D = _spatial_dropout(2)
SPATIAL_DROPOUT_3D = _spatial_dropout(3)


# -- noise layers ----------------------------------------------------------------------------------


def _any_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    return [ins[0]]


def _rate_below_one(layer: str) -> Callable[[dict], None]:
    """Keras accepts rate=1, which makes the training noise infinite; refuse it here."""

    def check(attrs: dict) -> None:
        if attrs["rate"] >= 1.0:
            raise ParamError(f"'rate' must be a number in [0, 1), got {attrs['rate']}: "
                             f"{layer} with rate 1 has infinite noise while training")

    return check


GAUSSIAN_NOISE = register(LayerSpec(
    name="GaussianNoise",
    params=(
        Param("stddev", Float(0.0, 1.0), doc="standard deviation of the additive noise (0..1)"),
        SEED,
    ),
    positional=("stddev", "seed"),
    shape=_any_shape, reference=_reference, lower=_lower,
    extra={"identity_at_inference": True},
    doc="Adds zero-mean Gaussian noise while training; identity at inference.",
    example="GaussianNoise(0.1)",
))

GAUSSIAN_DROPOUT = register(LayerSpec(
    name="GaussianDropout",
    params=(
        Param("rate", RATE, doc="drop probability; the noise has stddev sqrt(rate / (1 - rate))"),
        SEED,
    ),
    positional=("rate", "seed"),
    shape=_any_shape, reference=_reference, check=_rate_below_one("GaussianDropout"),
    lower=_lower, extra={"identity_at_inference": True},
    doc="Multiplies by Gaussian noise of mean 1 while training; identity at inference.",
    example="GaussianDropout(0.2)",
))


def _alpha_dropout_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext
                         ) -> list[TensorType]:
    assert ins[0].shape is not None
    _check_noise_shape("AlphaDropout", attrs["noise_shape"], ins[0].shape)
    return [ins[0]]


ALPHA_DROPOUT = register(LayerSpec(
    name="AlphaDropout",
    params=(
        Param("rate", RATE, aliases=("p",), doc="fraction of inputs dropped while training"),
        Param("noise_shape", Optional_(NoiseShape()), None,
              doc="shape of the dropout mask (1 = shared along that axis)"),
        SEED,
    ),
    positional=("rate", "noise_shape", "seed"),
    shape=_alpha_dropout_shape, reference=_reference, check=_rate_below_one("AlphaDropout"),
    lower=_lower, extra={"identity_at_inference": True},
    doc="Dropout that keeps SELU's mean and variance while training; identity at inference.",
    example="AlphaDropout(0.1)",
))

ACTIVITY_REGULARIZATION = register(LayerSpec(
    name="ActivityRegularization",
    params=(
        Param("l1", Float(0.0), 0.0, doc="factor of the L1 penalty on the activations"),
        Param("l2", Float(0.0), 0.0, doc="factor of the L2 penalty on the activations"),
    ),
    positional=("l1", "l2"),
    shape=_any_shape, reference=_reference, lower=_lower,
    extra={"identity_at_inference": True},
    doc="Adds an L1/L2 penalty on its input to the training loss; identity at inference.",
    example="ActivityRegularization(l2=1e-4)",
))
