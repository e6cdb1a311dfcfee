"""The native CPU target's support library: LLVM through llvmlite.

``host`` describes target machines and turns LLVM IR text into optimised object code (host or
cross: x86-64, aarch64); ``vecmath`` writes vector transcendental functions as plain LLVM IR so
generated code needs no libm; ``cache`` keeps compiled objects on disk; ``jit`` loads an object
into this process and hands out ctypes callables. The IR lowering sits above these modules; no
backend is registered here.
"""
