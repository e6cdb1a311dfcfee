"""The cuda target: Triton kernels generated from the loop IR (see backend.py)."""
