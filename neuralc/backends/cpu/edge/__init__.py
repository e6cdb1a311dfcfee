"""Edge deployment of the native CPU target: standalone executables, shared libraries with a
C header, and relocatable objects, for x86-64 and aarch64, with no Python at run time.

``build.build_edge`` makes them; ``cmodel`` turns the model's signature and neuralc's input
checks into C; ``toolchain`` finds the C compiler and linker (zig, or the system's); ``c/``
holds the C runtime (``nc_runtime.c``: the ABI, external weights, checks) and the
executable's command line (``nc_main.c``: .npy in and out, ``--info``, ``--bench``).
"""
