"""What one ``neuralc bench`` run measures: the parsed, validated request.

Everything a user can get wrong (a target or peer name, a batch list, a ``--dim``) is checked
here, before any model is compiled or any process started, and reported as a one-line
:class:`~neuralc.driver.UsageError` (exit 2).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from neuralc.ir.types import PRECISIONS

# neuralc targets a bench cell can run (the source targets are timed as the torch peers).
TARGETS = ("reference", "onnx", "cpu", "cuda", "tensorrt")
SOURCE_TARGETS = ("pytorch", "keras")
# Peers: what users run today, on neuralc's generated module or ONNX with the same weights.
PEERS = ("torch", "torch-compile", "onnxruntime")
# The Python packages each peer needs, and the extra of neuralc that installs them.
PEER_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("torch", "safetensors"), "torch"),
    "torch-compile": (("torch", "safetensors"), "torch"),
    "onnxruntime": (("onnx", "onnxruntime"), "onnx"),
}
# Targets whose fused kernels can be timed one by one (--kernels).
PROFILED_TARGETS = ("cpu",)

DEFAULT_MIN_TIME = 0.5  # seconds of timed calls per cell when --repeat is not given
DEFAULT_TIMEOUT = 600.0  # seconds per cell (torch.compile of a large model is slow)
DEFAULT_OTHER_SIZE = 64  # every symbolic dim but the batch: the report's nominal size


def usage_error(message: str) -> Exception:
    """A :class:`~neuralc.driver.UsageError` (imported late: the CLI builds its parsers from
    this module's names, and the driver takes half a second to import)."""
    from neuralc.driver import UsageError

    return UsageError(message)


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class BenchConfig:
    """One bench run. Lists are in the order the user gave them (the table keeps it)."""

    model: str
    targets: list[str]
    peers: list[str]
    batches: list[int] = field(default_factory=lambda: [1])
    dims: dict[str, int] = field(default_factory=dict)
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    threads: int = field(default_factory=usable_cpus)
    repeat: int | None = None
    min_time: float = DEFAULT_MIN_TIME
    warmup: int = 3
    timeout: float = DEFAULT_TIMEOUT
    kernels: bool = False
    kernel_repeat: int = 20
    opt: int = 2
    seed: int = 0
    weights: str | None = None
    network: str | None = None
    hparams: list[str] = field(default_factory=list)
    json: str | None = None
    plot: str | None = None
    markdown: str | None = None
    refresh_ceilings: bool = False

    def command(self) -> str:
        """The command that repeats this run exactly, every default spelled out."""
        argv = ["neuralc", "bench", self.model,
                "--targets", ",".join(self.targets) or "none",
                "--peers", ",".join(self.peers) or "none",
                "--batch", ",".join(map(str, self.batches)),
                "--precision", ",".join(self.precisions),
                "--threads", str(self.threads)]
        for k, v in self.dims.items():
            argv += ["--dim", f"{k}={v}"]
        argv += (["--repeat", str(self.repeat)] if self.repeat is not None
                 else ["--min-time", f"{self.min_time:g}"])
        argv += ["--warmup", str(self.warmup), f"-O{self.opt}"]
        argv += ["--weights", self.weights] if self.weights else ["--seed", str(self.seed)]
        if self.network:
            argv += ["--network", self.network]
        for h in self.hparams:
            argv += ["--hparam", h]
        if self.kernels:
            argv += ["--kernels", "--kernel-repeat", str(self.kernel_repeat)]
        return shlex.join(argv)


def name_list(text: str, known: tuple[str, ...], flag: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]``, each one of ``known`` (``none`` is the empty list)."""
    if text.strip() == "none":
        return []
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise usage_error(f"{flag} expects a comma-separated list, got '{text}'")
    for n in names:
        if flag == "--targets" and n in SOURCE_TARGETS:
            raise usage_error(f"--targets {n}: the {n} target writes source code; neuralc's "
                             "PyTorch module is timed by the peers torch and torch-compile")
        if n not in known:
            raise usage_error(f"{flag}: unknown name '{n}'; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def int_list(text: str, flag: str) -> list[int]:
    """``1,32`` -> ``[1, 32]``: positive integers without repeats."""
    out: list[int] = []
    for t in text.split(","):
        try:
            v = int(t)
        except ValueError:
            raise usage_error(f"{flag} expects positive integers like 1,32; got '{text}'") from None
        if v < 1:
            raise usage_error(f"{flag} expects positive integers; got {v}")
        if v not in out:
            out.append(v)
    return out


def dim_sizes(items: list[str]) -> dict[str, int]:
    """``["seq=128"]`` -> ``{"seq": 128}`` (checked against the model later)."""
    out: dict[str, int] = {}
    for s in items:
        k, _, v = s.partition("=")
        if not k or not v.isdigit() or int(v) < 1:
            raise usage_error(f"--dim expects NAME=N with a positive N, got '{s}'")
        out[k] = int(v)
    return out


def precision_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if n not in PRECISIONS:
            raise usage_error(f"--precision: unknown precision '{n}'; known: "
                             f"{', '.join(PRECISIONS)}")
    if not names:
        raise usage_error("--precision expects a list like fp32,fp16")
    return list(dict.fromkeys(names))
