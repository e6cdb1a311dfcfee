"""What the frontend hands on: the graph IR of one network and what the IR does not carry.

A leaf of the frontend (no parsing, no passes), so that backends and the runtime can name a
compiled model without importing the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neuralc.diagnostics import Diagnostic
from neuralc.frontend.hparams import HParams
from neuralc.frontend.sections import TrainingConfig
from neuralc.ir.core import Module
from neuralc.location import Location


@dataclass
class NetworkInfo:
    """What the graph IR does not carry: input names and training configuration."""

    name: str
    input_names: list[str]
    training: TrainingConfig
    hparams: HParams
    layer_locations: dict[str, Location] = field(default_factory=dict)


@dataclass
class CompiledModel:
    module: Module
    info: NetworkInfo
    filename: str
    warnings: list[Diagnostic] = field(default_factory=list)
