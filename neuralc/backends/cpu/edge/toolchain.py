"""The C compiler and linker of edge builds: which one runs, for which target, and what a user
must install when none fits.

Two toolchains work:

- **zig** (``pip install ziglang``, the ``edge`` extra): ``zig cc`` is clang with a C library
  for every target and lld, so one package builds x86-64 and aarch64 executables, dynamic
  against glibc (2.17 or newer on the device) or fully static with musl. Preferred when
  installed.
- **system**: the machine's ``cc`` (gcc or clang) for its own architecture, and
  ``aarch64-linux-gnu-gcc`` (Debian ``gcc-aarch64-linux-gnu``, which brings the aarch64 glibc)
  for Arm; ``--static`` needs the static C library (Debian ``libc6-dev``).

``NEURALC_TOOLCHAIN=zig|system`` forces one; ``CC`` names the host compiler of ``system``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from neuralc.backends.base import BackendUnavailable
from neuralc.backends.cpu.host import TargetSpec

GLIBC = "2.17"  # the oldest glibc a dynamic build runs on (aarch64's first)
_HOST_ARCH = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


@dataclass(frozen=True)
class EdgeTarget:
    """What a binary is built for: the code's machine and how the C library is linked."""

    spec: TargetSpec
    static: bool = False

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def libc(self) -> str:
        """``glibc`` (dynamic) or, with ``--static``, the static C library of the toolchain."""
        return "static" if self.static else "glibc"


def host_arch() -> str:
    return _HOST_ARCH.get(platform.machine().lower(), platform.machine().lower())


def _zig_binary() -> str | None:
    """The ``zig`` executable of the ziglang wheel, if it is installed."""
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        exe = Path(folder) / "zig"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Toolchain:
    """A C compiler driver that also links (``cc``) and makes relocatable objects."""

    kind: str  # "zig" or "system"
    driver: tuple[str, ...]
    target_flags: tuple[str, ...]
    version: str

    @property
    def name(self) -> str:
        return f"{self.kind} ({self.version})"

    def cc(self) -> list[str]:
        """The compiler command with its target flags (sources, objects and -o follow)."""
        return [*self.driver, *self.target_flags]

    def partial_link(self, objects: list[str], out: str) -> list[str]:
        """One relocatable object from several (``ld -r``)."""
        if self.kind == "zig":
            return [self.driver[0], "ld.lld", "-r", *objects, "-o", out]
        return [*self.driver, "-r", "-nostdlib", *objects, "-o", out]

    def run(self, cmd: list[str], what: str) -> None:
        """Run a step; a failure is a BackendUnavailable with the tool's first error line."""
        done = _run(cmd)
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            first = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
            raise BackendUnavailable(f"the C toolchain ({self.name}) failed to {what}: "
                                     f"{first.strip()}")


def _zig(target: EdgeTarget) -> Toolchain | None:
    exe = _zig_binary()
    if exe is None:
        return None
    libc = "musl" if target.static else f"gnu.{GLIBC}"
    flags = ["-target", f"{target.arch}-linux-{libc}", "-mcpu=baseline"]
    if target.static:
        flags.append("-static")
    version = _run([exe, "version"]).stdout.strip() or "zig"
    return Toolchain("zig", (exe, "cc"), tuple(flags), f"zig {version}")


def _system_compiler(target: EdgeTarget) -> str | None:
    if target.arch == host_arch():
        names = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
    else:
        names = [f"{target.arch}-linux-gnu-gcc"]
    for name in names:
        path = shutil.which(name) if name else None
        if path is None:
            continue
        machine = _run([path, "-dumpmachine"]).stdout.strip()
        if machine.split("-", 1)[0] == target.arch:
            return path
    return None


def _system(target: EdgeTarget) -> Toolchain | None:
    cc = _system_compiler(target)
    if cc is None:
        return None
    if target.static:
        libc_a = _run([cc, "-print-file-name=libc.a"]).stdout.strip()
        if not os.path.isabs(libc_a):
            return None
    version = (_run([cc, "--version"]).stdout.splitlines() or [cc])[0]
    return Toolchain("system", (cc,), ("-static",) if target.static else (), version)


def missing_message(target: EdgeTarget, emit: str) -> str:
    """What to install for ``--emit emit`` on ``target``, as one line."""
    system = ("the static C library (Debian: apt install libc6-dev)" if target.static
              else "a C compiler (Debian: apt install gcc)")
    if target.arch != host_arch():
        system = (f"a {target.arch} cross compiler and C library (Debian: apt install "
                  f"gcc-{target.arch}-linux-gnu)")
    return (f"--emit {emit} for {target.arch}{' --static' if target.static else ''} needs a C "
            "compiler, a linker and a C library: pip install ziglang (or neuralc[edge]), or "
            f"install {system}")


def find_toolchain(target: EdgeTarget, emit: str) -> Toolchain:
    """The toolchain that builds ``target``: zig if installed, else the system's compilers;
    BackendUnavailable (exit 2) saying what to install when neither fits."""
    choice = os.environ.get("NEURALC_TOOLCHAIN", "auto").strip().lower() or "auto"
    if choice not in ("auto", "zig", "system"):
        raise BackendUnavailable(f"NEURALC_TOOLCHAIN must be auto, zig or system, got "
                                 f"'{choice}'")
    found = None
    if choice in ("auto", "zig"):
        found = _zig(target)
        if found is None and choice == "zig":
            raise BackendUnavailable("NEURALC_TOOLCHAIN=zig but the ziglang package is not "
                                     "installed: pip install ziglang")
    if found is None and choice in ("auto", "system"):
        found = _system(target)
    if found is None:
        raise BackendUnavailable(missing_message(target, emit))
    return found
