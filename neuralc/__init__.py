"""neuralc: a multi-level compiler for neural-network models written in the Neural DSL."""

__version__ = "0.1.0"
