"""The compile pipeline from ``.nr`` text to shape-checked graph IR, as one call.

The CLI, the Python API and the tests all go through :func:`compile_source`, so they see the
same diagnostics and the same IR.
"""

from __future__ import annotations

from pathlib import Path

from neuralc.diagnostics import CompileError, Diagnostic, DiagnosticEngine
from neuralc.files import FileProblem, FileTooLarge, read_text
from neuralc.frontend.hparams import HParams
from neuralc.frontend.lower import lower
from neuralc.frontend.macros import expand
from neuralc.frontend.model import CompiledModel
from neuralc.frontend.parser import parse
from neuralc.ir.core import Module
from neuralc.limits import SOURCE_BYTES
from neuralc.location import FileLoc
from neuralc.passes.base import PassContext
from neuralc.passes.manager import PassManager
from neuralc.passes.pipelines import pipeline
from neuralc.passes.registry import get_pass


class UsageError(Exception):
    """A problem with how neuralc was called (exit code 2), not with the model file."""




def compile_source(
    text: str,
    filename: str,
    network: str | None = None,
    hparams: HParams | None = None,
    opt_level: int = 2,
    pass_manager: PassManager | None = None,
) -> CompiledModel:
    """Parse, expand macros, lower the chosen network and run the graph pipeline.

    Raises CompileError (problems in the model) or UsageError (bad network/hparam names).
    """
    hparams = hparams or HParams()
    file = expand(parse(text, filename))
    names = [n.name for n in file.networks]
    if not names:
        raise CompileError([Diagnostic("error", f"{filename}: no 'network' block in the file")])
    seen: dict[str, object] = {}
    for n in file.networks:
        if n.name in seen:
            raise CompileError([Diagnostic("error", f"network '{n.name}' is defined twice",
                                           n.name_span).with_note("first defined here",
                                                                  seen[n.name])])
        seen[n.name] = n.name_span
    if network is None:
        if len(names) > 1:
            raise UsageError(
                f"{filename} holds several networks ({', '.join(names)}); "
                "choose one with --network NAME"
            )
        net = file.networks[0]
    else:
        match = [n for n in file.networks if n.name == network]
        if not match:
            raise UsageError(f"{filename} has no network '{network}'; it has: {', '.join(names)}")
        net = match[0]

    diags = DiagnosticEngine()
    module, info = lower(file, net, diags, hparams)
    unknown = hparams.unknown_overrides()
    if unknown and not diags.has_errors():
        known = sorted({u.path for u in hparams.uses})
        raise UsageError(
            f"--hparam {', '.join(unknown)}: no such hyperparameter in the model"
            + (f"; it has: {', '.join(known)}" if known else "; it has none")
        )
    defaulted = hparams.defaulted()
    if defaulted:
        listing = ", ".join(f"{u.path}={u.value!r} from {u.space}" for u in defaulted[:10])
        if len(defaulted) > 10:  # a macro or repeat can make thousands
            listing += f" and {len(defaulted) - 10:,} more"
        diags.warning(
            f"unresolved hyperparameters take their defaults: {listing}; "
            "set them with --hparam NAME=VALUE",
            defaulted[0].span,
        )
    diags.check()
    pm = pass_manager or PassManager([get_pass(n)() for n in pipeline(opt_level)])
    pm.run(module, PassContext(diags))
    return CompiledModel(module, info, filename, list(diags.warnings))


def tensor_stage(model: CompiledModel, passes: list[str], pass_manager: PassManager | None = None,
                 verify_each: bool = False) -> tuple[Module, list[Diagnostic]]:
    """A copy of the model's graph IR taken through the tensor-stage ``passes``.

    The graph module stays as it is (weights are sized and named from it); the copy is a deep
    clone (``Module.clone``), so the two share no op, value or attribute.
    """
    from neuralc.passes.registry import parse_pipeline

    copy = model.module.clone()
    pm = pass_manager or PassManager([], verify_each=verify_each)
    pm.passes = parse_pipeline(",".join(passes))
    diags = DiagnosticEngine()
    pm.run(copy, PassContext(diags))
    return copy, list(diags.warnings)


def network_names(path: str | Path) -> list[str]:
    """The names of the networks in a model file, in order, each once (``check`` checks all)."""
    text = read_source(Path(path))
    return list(dict.fromkeys(n.name for n in parse(text, str(path)).networks))


def compile_file(path: str | Path, **kwargs) -> CompiledModel:
    return compile_source(read_source(Path(path)), str(path), **kwargs)


def read_source(p: Path) -> str:
    """The text of a model or IR file, read bounded (neuralc.files: no FIFO, no device, no
    file over the size limit): too large is an error in the file, at its first line; any
    other failure is a usage error."""
    try:
        return read_text(p, SOURCE_BYTES.value, SOURCE_BYTES.exceeded())
    except FileTooLarge as e:
        raise CompileError([Diagnostic("error", str(e), FileLoc(str(p), 1, 1, 1, 2))]) from None
    except FileProblem as e:
        raise UsageError(str(e)) from None
