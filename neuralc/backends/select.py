"""Device selection: which variant of a compiled artifact runs here, and why.

Probes look at the machine without importing heavy libraries: the CUDA driver through
``ctypes`` (``libcuda.so.1``: ``cuInit``, ``cuDeviceGetCount``, each GPU's name and compute
capability), the CPU's architecture and features from ``/proc/cpuinfo`` (llvmlite's host
features where that file is missing), and Python packages by ``importlib.util.find_spec``.
Tests replace :func:`probe_cuda`, :func:`probe_cpu`, :func:`has_module` and
:func:`module_version` with fixed answers.

:func:`select_variant` picks the first entry, in the fixed preference order
(``runtime.artifact_variants.VARIANT_ORDER``), whose ``requires`` the host meets; a device
request (``device=``, ``--device``, else the model's ``execution { device }``) narrows the
choice to that device, and where it cannot be honoured the selection says so in a warning and
runs on what can. It never falls back silently: the report names the chosen variant, the
host, and the reason each better variant was skipped.

``--target auto`` for ``neuralc run MODEL.nr`` asks :func:`select_target` (onnxruntime if
installed, else the reference interpreter).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import platform
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from neuralc.driver import UsageError
from neuralc.runtime.artifact import ArtifactError
from neuralc.runtime.artifact_variants import VARIANT_ORDER, VariantEntry

# -- probes ---------------------------------------------------------------------------------

_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
# CPU features the report shows, per architecture (LLVM's names, as /proc/cpuinfo spells them).
_SHOWN_FEATURES = {"x86_64": ("avx512f", "avx2", "fma"), "aarch64": ("neon", "dotprod")}
# /proc/cpuinfo names on aarch64 -> LLVM's names.
_ARM_FEATURES = {"asimd": "neon", "asimddp": "dotprod", "fphp": "fullfp16", "sve": "sve"}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


@dataclass(frozen=True)
class CudaInfo:
    """The CUDA driver's answer: the GPUs, or ``problem`` saying why there are none usable."""

    gpus: tuple[Gpu, ...] = ()
    problem: str | None = None
    driver_version: int | None = None


@dataclass(frozen=True)
class CpuInfo:
    arch: str  # x86_64, aarch64, ...
    features: frozenset[str]

    def has(self, feature: str) -> bool:
        """NEON is architectural on AArch64, whatever the feature list says."""
        return feature in self.features or (feature == "neon" and self.arch == "aarch64")


def _cuda_error(lib: ctypes.CDLL, code: int) -> str:
    name = ctypes.c_char_p()
    try:
        if lib.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
            return name.value.decode()
    except AttributeError:
        pass
    return f"CUDA error {code}"


def probe_cuda() -> CudaInfo:
    """The GPUs the CUDA driver shows (honouring ``CUDA_VISIBLE_DEVICES``), through ctypes."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return CudaInfo(problem="no driver found")
    rc = lib.cuInit(0)
    if rc == 100:  # CUDA_ERROR_NO_DEVICE
        return CudaInfo(problem="the driver sees no GPU")
    if rc != 0:
        return CudaInfo(problem=f"the driver failed to start ({_cuda_error(lib, rc)})")
    version = ctypes.c_int()
    driver = version.value if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 else None
    count = ctypes.c_int()
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        return CudaInfo(problem=f"cannot count GPUs ({_cuda_error(lib, rc)})")
    gpus = []
    for i in range(count.value):
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        buf = ctypes.create_string_buffer(256)
        if (lib.cuDeviceGet(ctypes.byref(dev), i) != 0
                or lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev) != 0
                or lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev) != 0):
            continue
        lib.cuDeviceGetName(buf, 256, dev)
        gpus.append(Gpu(i, buf.value.decode(errors="replace") or f"GPU {i}",
                        (major.value, minor.value)))
    if not gpus:
        return CudaInfo(problem="the driver sees no GPU", driver_version=driver)
    return CudaInfo(tuple(gpus), None, driver)


def _normal_arch(name: str) -> str:
    name = name.lower()
    return _ARCH_ALIASES.get(name, name)


def probe_cpu() -> CpuInfo:
    """Architecture and features: ``/proc/cpuinfo``, else llvmlite's view of the host."""
    arch = _normal_arch(platform.machine())
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "flags":  # x86
            return CpuInfo(arch, frozenset(value.split()))
        if key == "features":  # aarch64
            return CpuInfo(arch, frozenset(_ARM_FEATURES.get(f, f) for f in value.split()))
    from neuralc.backends.cpu.host import TargetSpec  # imports llvmlite: only without cpuinfo

    spec = TargetSpec.host()
    return CpuInfo(spec.arch, spec.enabled_features)


def has_module(name: str) -> bool:
    """Whether a Python package is installed (found, not imported). A bare directory of that
    name on the path (a namespace package: no ``__init__.py``, such as a ``tensorrt/`` folder
    in the working directory) is not an installed package."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


def module_version(name: str) -> str | None:
    """An installed distribution's version, from its metadata (not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Host:
    """What this machine has; each probe runs once, when first asked (CUDA only if needed)."""

    @functools.cached_property
    def cpu(self) -> CpuInfo:
        return probe_cpu()

    @functools.cached_property
    def cuda(self) -> CudaInfo:
        return probe_cuda()

    def describe(self, cuda_probed: bool) -> str:
        shown = _SHOWN_FEATURES.get(self.cpu.arch, ())
        have = [f for f in shown if self.cpu.has(f)]
        lacks = [f for f in shown if not self.cpu.has(f)]
        cpu = self.cpu.arch + (f" with {', '.join(have)}" if have else "")
        cpu += f" (no {', '.join(lacks)})" if lacks else ""
        if not cuda_probed:
            return f"{cpu}; cuda not probed (nothing here needs it)"
        if self.cuda.problem:
            return f"{cpu}; cuda: {self.cuda.problem}"
        gpus = ", ".join(f"{g.index}: {g.name} ({g.sm})" for g in self.cuda.gpus)
        return f"{cpu}; cuda GPUs {gpus}"


# -- requirements ---------------------------------------------------------------------------

KNOWN_REQUIREMENTS = frozenset({"modules", "arch", "cpu_features", "compute_capability",
                                "min_compute_capability", "gpu_name", "tensorrt_version"})


def _capability(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


def _sm(text: str) -> str:
    major, minor = _capability(text)
    return f"sm_{major}{minor}"


def unmet(entry: VariantEntry, host: Host, gpu_index: int | None = None) -> str | None:
    """Why the host cannot run ``entry``, or None when it can."""
    req = entry.requires
    unknown = sorted(set(req) - KNOWN_REQUIREMENTS)
    if unknown:
        return f"needs '{unknown[0]}', which this neuralc does not know (a newer one wrote it)"
    for m in req.get("modules", []):
        if not has_module(m):
            return f"{m} is not installed"
    arch = req.get("arch")
    if arch and host.cpu.arch != arch:
        return f"the host is {host.cpu.arch}, the code is for {arch}"
    for f in req.get("cpu_features", []):
        if not host.cpu.has(f):
            return f"host lacks {f}"
    if entry.device != "cuda":
        return None
    return _gpu_unmet(req, host.cuda, gpu_index or 0)


def _gpu_unmet(req: Mapping[str, object], cuda: CudaInfo, index: int) -> str | None:
    if cuda.problem:
        return cuda.problem
    if index >= len(cuda.gpus):
        return f"there is no GPU {index} (the driver sees {len(cuda.gpus)})"
    gpu = cuda.gpus[index]
    exact = req.get("compute_capability")
    if exact is not None and gpu.capability != _capability(str(exact)):
        return f"GPU {index} ({gpu.name}) is {gpu.sm}; this code is for {_sm(str(exact))}"
    least = req.get("min_compute_capability")
    if least is not None and gpu.capability < _capability(str(least)):
        return f"GPU {index} ({gpu.name}) is {gpu.sm}; this needs {_sm(str(least))} or newer"
    name = req.get("gpu_name")
    if name is not None and gpu.name != name:
        return f"built for {name}; GPU {index} is {gpu.name}"
    trt = req.get("tensorrt_version")
    if trt is not None:
        have = module_version("tensorrt")
        if have is None:
            return "tensorrt is not installed"
        if have != trt:
            return f"built with TensorRT {trt}; this host has TensorRT {have}"
    return None


# -- selection ------------------------------------------------------------------------------


class NoVariantError(ArtifactError):
    """No variant of an artifact can run on this machine (each reason is in the message)."""


@dataclass
class Selection:
    entry: VariantEntry
    device: str  # "cpu" or "cuda:N"
    report: str
    warnings: list[str]
    skipped: list[tuple[str, str]]


def parse_device(text: str | None) -> tuple[str, int | None]:
    """``auto``/None, ``cpu``, ``cuda`` (or ``gpu``), ``cuda:N`` -> (kind, index)."""
    if text is None:
        return "auto", None
    t = str(text).strip().lower()
    if t in ("auto", "cpu"):
        return t, None
    if t in ("cuda", "gpu"):
        return "cuda", None
    if t.startswith("cuda:") and t[5:].isdigit():
        return "cuda", int(t[5:])
    raise UsageError(f"unknown device '{text}'; expected auto, cpu, cuda or cuda:N")


def _order_key(indexed: tuple[int, VariantEntry]) -> tuple[int, int]:
    i, e = indexed
    return (VARIANT_ORDER.index(e.kind) if e.kind in VARIANT_ORDER else len(VARIANT_ORDER), i)


def select_variant(entries: Sequence[VariantEntry], *, device: str | None = None,
                   model_device: str = "auto", loadable: Collection[str] | None = None,
                   not_built: Mapping[str, str] | None = None, only: str | None = None,
                   model_name: str = "the model", origin: str = "the artifact",
                   host: Host | None = None) -> Selection:
    """Choose the entry to run (see the module docstring); NoVariantError if none can.

    ``device`` is the caller's request (None: the model's ``execution { device }``);
    ``loadable`` the kinds this neuralc can load (None: all); ``not_built`` the kinds the
    artifact lacks with the reason given when it was built; ``only`` restricts the choice to
    one variant name or kind (an explicit request: no fallback).
    """
    host = host or Host()
    kind, index = parse_device(device if device is not None else model_device)
    asked = kind if index is None else f"{kind}:{index}"
    if device is not None:
        source, origin_note = f"device '{asked}'", "asked for"
    else:
        source = f'the model\'s execution {{ device: "{asked}" }}'
        origin_note = "from the model's execution { device }"
    if kind == "cuda":
        host.cuda  # noqa: B018 - probe, so the report says what the driver sees
    ordered = [e for _, e in sorted(enumerate(entries), key=_order_key)]
    if only is not None:
        ordered = [e for e in ordered if only in (e.name, e.kind)]
        if not ordered:
            names = ", ".join(e.name for e in entries)
            raise NoVariantError(f"{origin} has no variant '{only}'; it has: {names}")
    reasons: dict[str, str | None] = {}
    for e in ordered:
        if loadable is not None and e.kind not in loadable:
            reasons[e.name] = f"this neuralc cannot load {e.kind} variants"
        else:
            reasons[e.name] = unmet(e, host, index if e.device == "cuda" else None)
    runnable = [e for e in ordered if reasons[e.name] is None]
    warnings: list[str] = []
    chosen = None
    if kind == "auto":
        chosen = runnable[0] if runnable else None
    else:
        on_device = [e for e in runnable if e.device == kind]
        chosen = on_device[0] if on_device else None
        if chosen is None and runnable and only is None:
            chosen = runnable[0]
            why = _device_reasons(kind, ordered, reasons, not_built or {})
            warnings.append(f"{source} cannot be honoured ({why}); running {chosen.name} on "
                            f"{chosen.device} instead")
    if chosen is None:
        listing = "; ".join(f"{e.name}: {reasons[e.name] or f'not on {asked}'}" for e in ordered)
        raise NoVariantError(f"no variant of {origin} runs on this machine ({listing})")
    run_on = "cpu" if chosen.device == "cpu" else f"cuda:{index or 0}"
    skipped = _skipped(chosen, ordered, reasons, not_built or {}, kind, only)
    cuda_probed = "cuda" in vars(host)  # the cached_property ran: something needed a GPU
    lines = [f"{model_name}: running variant '{chosen.name}' on {run_on} ({chosen.summary})",
             f"  request: {asked}" + ("" if kind == "auto" and device is None else
                                      f" ({origin_note})")
             + (f", variant '{only}'" if only is not None else ""),
             f"  host: {host.describe(cuda_probed)}"]
    lines += [f"  skipped {name}: {why}" for name, why in skipped]
    later = [e.name for e in ordered[ordered.index(chosen) + 1:]]
    if later:
        lines.append(f"  also in the artifact: {', '.join(later)}")
    lines += [f"  warning: {w}" for w in warnings]
    return Selection(chosen, run_on, "\n".join(lines), warnings, skipped)


def _device_reasons(kind: str, ordered: Sequence[VariantEntry], reasons: Mapping[str, str | None],
                    not_built: Mapping[str, str]) -> str:
    """Why nothing runs on device ``kind``: each such entry's reason, or what was not built."""
    out = [f"{e.name}: {reasons[e.name]}" for e in ordered if e.device == kind]
    if not out:
        missing = [f"{k}: {why}" for k, why in not_built.items()
                   if (k in ("cuda", "tensorrt")) == (kind == "cuda")]
        out = [f"there is no {kind} variant"] + missing
    return "; ".join(out)


def _skipped(chosen: VariantEntry, ordered: Sequence[VariantEntry],
             reasons: Mapping[str, str | None], not_built: Mapping[str, str], kind: str,
             only: str | None) -> list[tuple[str, str]]:
    """Every variant better than the chosen one, with why it was not taken; kinds the
    artifact lacks are listed at their place in the preference order."""
    rank = VARIANT_ORDER.index(chosen.kind) if chosen.kind in VARIANT_ORDER else len(VARIANT_ORDER)
    out: list[tuple[str, str]] = []
    for k in VARIANT_ORDER[:rank]:
        if only is None and k in not_built and all(e.kind != k for e in ordered):
            out.append((k, f"not in this artifact ({not_built[k]})"))
        for e in ordered:
            if e.kind == k:
                out.append((e.name, reasons[e.name] or f"not on the requested device ({kind})"))
    for e in ordered[:ordered.index(chosen)]:
        if e.kind == chosen.kind:
            out.append((e.name, reasons[e.name] or f"not on the requested device ({kind})"))
    return out


# -- `neuralc run MODEL.nr --target auto` -----------------------------------------------------


def has_cuda_gpu() -> bool:
    """Whether the CUDA driver shows a GPU (through ctypes; torch is not imported)."""
    return bool(probe_cuda().gpus)


def runnable_targets() -> list[str]:
    """Built targets that can execute a model here, best first."""
    from neuralc.backends.base import BackendUnavailable
    from neuralc.backends.registry import get_backend

    out: list[str] = []
    for name in ("cpu", "onnx"):  # native code first: every layer runs on it
        backend = get_backend(name)
        if backend is None or not backend.runnable:
            continue
        try:
            backend.check_available()
        except BackendUnavailable:
            continue
        out.append(name)
    return out + ["reference"]


def select_target() -> str:
    return runnable_targets()[0]


__all__ = ["CpuInfo", "CudaInfo", "Gpu", "Host", "NoVariantError", "Selection", "has_module",
           "module_version", "parse_device", "probe_cpu", "probe_cuda", "select_target",
           "select_variant", "unmet"]
