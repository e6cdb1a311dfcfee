"""Dialects: sets of op definitions (builtin/func, graph; tensor and kernel come later)."""
