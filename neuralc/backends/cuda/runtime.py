"""Running the cuda target's module in this process: on a GPU, or in Triton's interpreter.

The generated module is written to neuralc's cache folder (``cuda/modules/<sha256>.py``:
Triton reads a kernel's source from its file) and imported. Loading binds the weights on the
device and runs the init program once (the module's ``Program``). A call checks the inputs
against the model's symbolic signature first (the same checks and messages as every target),
refuses sizes whose buffers would overflow 32-bit element offsets, then launches the kernels.

On a GPU a call may replay a CUDA graph (:class:`GraphCache`): one graph per set of sizes,
captured over the static arena after a warm-up run (Triton compiles at first launch, which a
capture cannot hold); inputs are copied into the graph's static input tensors and outputs
cloned out of its static outputs, so no caller ever holds a buffer a later replay overwrites.
The number of graphs is capped; :attr:`CudaExecutable.graph_report` says why a call did not
replay one. ``--autotune`` (GPU only) picks each kernel's launch configuration by timing its
candidates (:mod:`neuralc.backends.cuda.autotune`).

With ``TRITON_INTERPRET=1`` the kernels run in Triton's interpreter on CPU tensors (how the
tests run them): launches use the module's ``INTERPRETER_CONFIG`` (larger blocks, fewer
programs), and the interpreter's integer-overflow sanitizer, which triples its run time, is
turned off (:func:`quiet_interpreter`; sizes are checked against 32-bit offsets here instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from neuralc.backends.base import BackendUnavailable, Executable
from neuralc.backends.cuda.compile import CudaCompilation
from neuralc.backends.cuda.module import ProgramSource
from neuralc.backends.select import has_module
from neuralc.frontend.model import CompiledModel
from neuralc.ir.dims import evaluate
from neuralc.runtime.signature import InputError, bind_inputs, select_func
from neuralc.runtime.sizes import check_run

INT32_LIMIT = 2 ** 31 - 1
MAX_GRAPHS = 8
_LOCK = threading.Lock()
_MODULES: dict[str, ModuleType] = {}


def interpreter_enabled() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def require_packages() -> None:
    """torch and triton, or BackendUnavailable naming the extra to install."""
    for name in ("torch", "triton"):
        if not has_module(name):
            raise BackendUnavailable(f"the cuda target needs {name}: pip install "
                                     "'neuralc[cuda]' (triton) and torch")


def quiet_interpreter() -> None:
    """Turn off the interpreter's per-operation integer-overflow checks (speed)."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    builder = getattr(interpreter, "interpreter_builder", None)
    options = getattr(builder, "options", None)
    if options is not None and dataclasses.is_dataclass(options) and \
            getattr(options, "sanitize_overflow", False):
        builder.options = dataclasses.replace(options, sanitize_overflow=False)


def check_interpreter_mode() -> None:
    """Triton decides at import whether its library is interpreted: ``TRITON_INTERPRET`` set
    after triton was imported gives kernels that cannot run; say so instead."""
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    if type(getattr(tl.standard, "sigmoid", None)) is JITFunction:
        raise BackendUnavailable("TRITON_INTERPRET=1 was set after triton was imported; set it "
                                 "before Python starts (or before importing triton)")


def module_folder() -> Path:
    """Where generated modules are written (neuralc's cache, else a temporary folder)."""
    from neuralc.backends.cpu.cache import cache_root

    folder = cache_root() / "cuda" / "modules"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".probe"
        probe.write_text("")
        probe.unlink()
        return folder
    except OSError:
        folder = Path(tempfile.gettempdir()) / f"neuralc-cuda-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def load_module(text: str) -> ModuleType:
    """The generated module, imported from its file (one import per distinct text)."""
    key = hashlib.sha256(text.encode()).hexdigest()
    interp = "i" if interpreter_enabled() else "g"  # triton.jit decides at import
    with _LOCK:
        mod = _MODULES.get(key + interp)
        if mod is not None:
            return mod
        path = module_folder() / f"{key}.py"
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)
        name = f"neuralc_cuda_{key[:16]}_{interp}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        _MODULES[key + interp] = mod
        return mod


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_offsets(program: ProgramSource, arena_bytes: int, sizes: Mapping[str, int]) -> None:
    """Kernels index with 32-bit integers: refuse sizes whose buffers exceed them."""
    big = []
    for what, types in (("input", program.inputs), ("output", program.outputs)):
        for k, t in enumerate(types):
            n = _numel(tuple(evaluate(d, sizes) for d in t.shape))
            if n > INT32_LIMIT:
                big.append(f"{what} {k} ({n:,} elements)")
    if arena_bytes > INT32_LIMIT:
        big.append(f"the arena ({arena_bytes:,} bytes)")
    if big:
        raise InputError("these sizes give buffers beyond 32-bit offsets, which the cuda "
                         f"kernels do not index: {', '.join(big)}; use a smaller batch")


class GraphCache:
    """CUDA graphs of one program, one per set of sizes, at most ``limit`` of them, over an
    arena of their own (a graph holds the addresses it was captured with: the arena must
    outlive it and never move under it)."""

    def __init__(self, program: Any, module: ModuleType, limit: int = MAX_GRAPHS):
        import torch

        self.torch = torch
        self.program = program
        self.module = module
        self.limit = limit
        self.graphs: OrderedDict[tuple, tuple[Any, list[Any], list[Any]]] = OrderedDict()
        self.arena = torch.empty(0, dtype=torch.uint8, device=program.device)
        self.last_reason = ""

    def run(self, inputs: list[Any], sizes: Mapping[str, int]) -> list[Any] | None:
        """Outputs by replaying the graph of these sizes (capturing it first), or None with
        :attr:`last_reason` saying why not."""
        torch = self.torch
        key = tuple(sorted(sizes.items()))
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= self.limit:
                self.last_reason = (f"{len(self.graphs)} graphs are captured already (the "
                                    "cap); these sizes run without one")
                return None
            need = int(self.module.arena_bytes(sizes))
            if need > self.arena.numel():
                # a larger arena moves every buffer: the graphs captured so far go with the old
                self.graphs.clear()
                self.arena = torch.empty(max(need, 64), dtype=torch.uint8,
                                         device=self.program.device)
            xs = [torch.empty(tuple(x.shape), dtype=dtype, device=self.program.device)
                  for x, (_, (_, dtype)) in zip(inputs, self.module.INPUTS)]
            outs = [torch.empty(shape, dtype=dtype, device=self.program.device)
                    for shape, (_, dtype) in zip(self.module.output_shapes(sizes),
                                                 self.module.OUTPUTS)]
            for static, x in zip(xs, inputs):
                static.copy_(torch.as_tensor(x).to(device=static.device, dtype=static.dtype))
            args = (xs, outs, self.program.init, self.program.w, self.arena, dict(sizes),
                    self.program.config)
            try:
                # warm up on a side stream: Triton compiles at first launch, which a capture
                # cannot hold
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    self.module.run(*args)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.module.run(*args)
            except RuntimeError as e:
                self.last_reason = f"capture failed ({e}); running without a graph"
                return None
            entry = (graph, xs, outs)
            self.graphs[key] = entry
        graph, xs, outs = entry
        for static, x in zip(xs, inputs):
            static.copy_(torch.as_tensor(x).to(device=static.device, dtype=static.dtype))
        graph.replay()
        self.last_reason = ""
        return [o.clone() for o in outs]


class CudaExecutable(Executable):
    """The generated module loaded with its weights; ``exe(inputs)`` -> numpy outputs."""

    def __init__(self, compilation: CudaCompilation, model: CompiledModel,
                 weights: Mapping[str, np.ndarray], *, cuda_graphs: bool | None = None,
                 autotune: bool = False, device: str | None = None):
        require_packages()
        import torch

        self.torch = torch
        self.compilation = compilation
        self.source = compilation.program
        self.model = model
        self.func = select_func(model.module)
        self.dims = model.module.attributes.get("dims")
        self.constraints = model.module.attributes.get("dim_constraints")
        self.interpreted = interpreter_enabled()
        if self.interpreted:
            check_interpreter_mode()
            quiet_interpreter()
            device = "cpu"
            if compilation.precision == "bf16" and any("tl.dot(" in k.text
                                                       for k in self.source.kernels):
                # Triton's interpreter multiplies bfloat16 tiles wrongly (its numpy emulation
                # of the type); the GPU does not: refuse rather than return wrong numbers
                raise BackendUnavailable("bf16 matmuls cannot run in Triton's interpreter (it "
                                         "computes bfloat16 tl.dot wrongly); run them on a GPU")
        elif not torch.cuda.is_available():
            raise BackendUnavailable(
                "the cuda target needs an NVIDIA GPU (torch sees none); set "
                "TRITON_INTERPRET=1 to run its kernels in Triton's interpreter on the CPU")
        self.device = device or "cuda"
        self.module = load_module(self.source.text)
        self.tuner: Any = None
        self.tuned = False
        if autotune:
            if self.interpreted:
                raise BackendUnavailable("--autotune times kernels on a GPU; Triton's "
                                         "interpreter has none")
            from neuralc.backends.cuda.autotune import Autotuner

            self.tuner = Autotuner(self.module, torch.device(self.device),
                                   {k.name: k.text for k in self.source.kernels})
        self.program = self.module.Program(dict(weights), device=self.device)
        graphs = (not self.interpreted) if cuda_graphs is None else cuda_graphs
        if graphs and self.interpreted:
            raise BackendUnavailable("CUDA graphs need a GPU; Triton's interpreter has none")
        self.graphs = GraphCache(self.program, self.module) if graphs else None
        self.graph_report = "CUDA graphs off" if not graphs else "no call yet"

    def sizes(self, env: Mapping[str, int]) -> dict[str, int]:
        missing = [s for s in self.source.symbols if s not in env]
        if missing:
            raise InputError(f"the inputs do not determine the sizes {', '.join(missing)}")
        return {s: int(env[s]) for s in self.source.symbols}

    def run_torch(self, tensors: list[Any], sizes: Mapping[str, int]) -> list[Any]:
        """Outputs (torch tensors on the device) of inputs already checked."""
        check_offsets(self.source, int(self.module.arena_bytes(sizes)), sizes)
        if not self.interpreted:
            with self.torch.cuda.device(self.program.device):
                return self._run(tensors, sizes)
        return self._run(tensors, sizes)

    def _run(self, tensors: list[Any], sizes: Mapping[str, int]) -> list[Any]:
        # the first call tunes (every kernel launches there); later ones use the choices
        launch = None
        if self.tuner is not None and not self.tuned:
            launch = self.tuner.launch(self.program)
            self.tuned = True
        if self.graphs is not None and launch is None:
            outs = self.graphs.run(tensors, sizes)
            if outs is not None:
                self.graph_report = "replayed a CUDA graph"
                return outs
            self.graph_report = f"no CUDA graph: {self.graphs.last_reason}"
        elif self.graphs is not None:
            self.graph_report = "no CUDA graph while autotuning (kernels are being timed)"
        return self.program(*tensors, sizes=dict(sizes), launch=launch)

    def __call__(self, inputs: list[np.ndarray] | dict[str, np.ndarray]) -> list[np.ndarray]:
        arrays, env = bind_inputs(self.func, inputs, self.dims)
        check_run(self.func, arrays, env, self.constraints)
        torch = self.torch
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        outs = self.run_torch(tensors, self.sizes(env))
        result = []
        for o in outs:
            o = o.detach()
            if o.dtype == torch.bfloat16:
                o = o.float()  # numpy has no bfloat16: float32 holds it (as the reference)
            result.append(o.cpu().numpy())
        return result
