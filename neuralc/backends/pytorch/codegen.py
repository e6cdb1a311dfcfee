"""The PyTorch source generator: one readable, self-contained Python module per network.

The module holds an ``nn.Module`` whose submodules are named like the ``.nr`` layers (so
``state_dict()`` keys are neuralc's weight names and neuralc's safetensors load with
``strict=True``), a ``forward`` with one line per layer under a comment quoting the ``.nr``
text it came from, ``build_model()``, the training section of :mod:`training`, and the snippets
(:mod:`snippets`) the model and the training loop use, copied in so that the file needs only
torch, numpy and safetensors. Every value crossing a layer boundary is channels-last.
"""

from __future__ import annotations

import ast as pyast
import functools
import keyword
from dataclasses import dataclass
from pathlib import Path

from neuralc.backends import pysource
from neuralc.backends.base import BackendError, BackendOptions
from neuralc.backends.pytorch import emit_advanced, emit_basic  # noqa: F401 - register emitters
from neuralc.backends.pytorch.core import (
    EMITTERS,
    UNSUPPORTED,
    EmitError,
    LayerCtx,
    SearchError,
    SectionError,
    dim_code,
    docstring,
    py,
    py_block,
    rule,
    wrap_line,
)
from neuralc.backends.pytorch.hpo import HPOPlan, PlanError, plan_hpo, source_text
from neuralc.backends.pytorch.training import TrainingWriter, input_specs
from neuralc.diagnostics import SOURCES, Diagnostic
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Block, Op, Value, func_body
from neuralc.ir.dims import Dim
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.location import CallSiteLoc, FileLoc, Location, primary
from neuralc.runtime.signature import select_func

SNIPPETS = Path(__file__).with_name("snippets.py")
TARGET = "pytorch"
LINE = 100

# nn.Module's own attributes (torch 2.13): a layer named like one is reached via _modules[...].
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr",
    "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule",
    "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule",
    "share_memory", "state_dict", "to", "to_empty", "train", "training", "type", "xpu",
    "zero_grad", "hp",
})

# Module-level names a generated file may use, and the import each needs (isort's order).
IMPORTS = [
    ("argparse", "import argparse"),
    ("contextlib", "import contextlib"),
    ("math", "import math"),
    ("sys", "import sys"),
    ("time", "import time"),
    ("Callable", "from collections.abc import {}"),
    ("Sequence", "from collections.abc import {}"),
    ("Path", "from pathlib import {}"),
    ("Any", "from typing import {}"),
    ("np", "import numpy as np"),
    ("torch", "import torch"),
    ("F", "import torch.nn.functional as F"),
    ("nn", "from torch import nn"),
    ("DataLoader", "from torch.utils.data import {}"),
    ("Dataset", "from torch.utils.data import {}"),
    ("Subset", "from torch.utils.data import {}"),
    ("TensorDataset", "from torch.utils.data import {}"),
]
_THIRD_PARTY = ("np", "torch", "F", "nn", "DataLoader", "Dataset", "Subset", "TensorDataset")


# -- snippets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    name: str
    source: str
    deps: frozenset[str]
    order: int
    names: frozenset[str]  # every name it reads (for the imports)


@functools.cache
def snippets() -> dict[str, Snippet]:
    """The top-level definitions of snippets.py: source text and the snippets each uses."""
    text = SNIPPETS.read_text(encoding="utf-8")
    tree = pyast.parse(text)
    found: dict[str, pyast.AST] = {}
    for node in tree.body:
        if isinstance(node, (pyast.FunctionDef, pyast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, pyast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], pyast.Name):
            found[node.targets[0].id] = node
        elif isinstance(node, pyast.AnnAssign) and isinstance(node.target, pyast.Name):
            found[node.target.id] = node
    out: dict[str, Snippet] = {}
    for i, (name, node) in enumerate(found.items()):
        used = {n.id for n in pyast.walk(node) if isinstance(n, pyast.Name)}
        source = pyast.get_source_segment(text, node)
        assert source is not None
        out[name] = Snippet(name, source, frozenset(used & found.keys() - {name}), i,
                            frozenset(used))
    return out


def snippet_closure(names: set[str]) -> list[Snippet]:
    """The named snippets and everything they use, in snippets.py's order."""
    table = snippets()
    todo, seen = list(names), set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(table[n].deps)
    return sorted((table[n] for n in seen), key=lambda s: s.order)


# -- names ----------------------------------------------------------------------------------------


def identifier(text: str) -> str:
    """A Python identifier close to ``text`` that Python reads back as itself (pysource)."""
    s = pysource.identifier(text)
    if not s or s[0].isdigit():
        s = "_" + s
    return s


def safe_attribute(name: str) -> bool:
    """Whether ``self.<name>`` reaches a submodule registered as ``name`` (``self.ﬁ`` would
    register ``fi``: NFKC)."""
    return (pysource.is_plain_identifier(name) and not name.startswith("_")
            and name not in MODULE_ATTRIBUTES)


def class_name(network: str) -> str:
    name = identifier(network)
    name = name[0].upper() + name[1:] if name[0].isalpha() else "Net" + name
    return name + "Model" if name in snippets() or keyword.iskeyword(name) else name


# -- locations as comments ------------------------------------------------------------------------


def _text_at(loc: FileLoc) -> str:
    line = SOURCES.line(loc.file, loc.line)
    if line is None:
        return ""
    if loc.end_line == loc.line and loc.end_col > loc.col:
        return line[loc.col - 1:loc.end_col - 1].strip()
    return line[loc.col - 1:].strip()


def describe(loc: Location, limit: int) -> str:
    """``mlp.nr:5  Dense(256, "relu")``, with the macro use site for expanded layers."""
    p = primary(loc)
    if not isinstance(p, FileLoc):
        return ""
    head = f"{Path(p.file).name}:{p.line}"
    if isinstance(loc, CallSiteLoc):
        caller = primary(loc.caller)
        if isinstance(caller, FileLoc):
            head += f" (from {' '.join(_text_at(caller).split())} at line {caller.line})"
    text = " ".join(_text_at(p).split())
    out = pysource.comment(f"{head}  {text}" if text else head)  # a file name may hold "\n"
    if len(out) > limit:
        out = out[:limit - 3].rstrip() + "..."
    return out


# -- the generator --------------------------------------------------------------------------------


class Generator:
    """Writes one network of a compiled model as a PyTorch module (see the module docstring)."""

    def __init__(self, model: CompiledModel, options: BackendOptions):
        self.model = model
        self.options = options
        self.func = select_func(model.module)
        self.body: Block = func_body(self.func)
        self.helpers: set[str] = set()
        self.errors: list[Diagnostic] = []
        self.plan: HPOPlan | None = None
        self.types: dict[Value, TensorType] = {}
        self.cls = class_name(model.info.name)
        self.stem = identifier(Path(model.filename).stem) or "model"

    # -- used by emitters ----------------------------------------------------------------------
    def module_ref(self, layer: str) -> str:
        return f"self.{layer}" if safe_attribute(layer) else f"self._modules[{py(layer)}]"

    def size_code(self, d: Dim, ctx: LayerCtx) -> str:
        def symbol(s: str) -> str:
            if self.plan is not None and s in self.plan.symbols:
                return f"hp[{py(self.plan.symbols[s])}]"
            raise EmitError(f"it needs a fixed size here, got the symbolic dim '{s}'")

        return dim_code(d, symbol)

    # -- naming ----------------------------------------------------------------------------------
    def _value_names(self) -> tuple[dict[Value, str], list[str]]:
        taken = {"self", "x", "s", "hp", "torch", "nn", "F", "math", "np", "super", self.cls,
                 *snippets()}
        names: dict[Value, str] = {}

        def fresh(base: str) -> str:
            name = identifier(base)
            if keyword.iskeyword(name) or name in taken:
                name += "_"
            i = 1
            candidate = name
            while candidate in taken:
                candidate = f"{name}{i}"
                i += 1
            taken.add(candidate)
            return candidate

        args = []
        for i, a in enumerate(self.body.args):
            n = fresh(a.name_hint or f"input{i}")
            names[a] = n
            args.append(n)
        ops = self.body.ops
        for i, op in enumerate(ops):
            if op.name == "func.return":
                continue
            layer = str(op.attributes.get("name", op.name.split(".")[-1]))
            for j, r in enumerate(op.results):
                if not r.uses:
                    names[r] = "_"
                elif (len(op.results) == 1 and len(r.uses) == 1 and i + 1 < len(ops)
                      and r.users()[0] is ops[i + 1]):
                    names[r] = "x"
                else:
                    names[r] = fresh(layer if j == 0 else f"{layer}_state{j}")
        return names, args

    # -- per layer --------------------------------------------------------------------------------
    def _error(self, message: str, loc: Location | None) -> None:
        self.errors.append(Diagnostic("error", message, loc))

    def _ctx(self, op: Op, spec: catalog.LayerSpec, names: dict[Value, str]) -> LayerCtx:
        layer = str(op.attributes.get("name", ""))
        hp_attrs = self.plan.layer_attrs.get(layer, {}) if self.plan else {}
        inner_hp = self.plan.inner_attrs.get(layer, {}) if self.plan else {}
        ctx = LayerCtx(
            gen=self, name=layer, spec=spec, attrs=op.attributes,
            in_types=[self.types.get(v, v.type) for v in op.operands],
            out_types=[self.types.get(r, r.type) for r in op.results],
            inputs=[names[v] for v in op.operands],
            input_is_arg=[v in self.body.args for v in op.operands],
            location=op.location, hp_attrs=dict(hp_attrs), inner_hp=dict(inner_hp))
        return ctx

    def _layers(self, names: dict[Value, str]) -> tuple[list[str], list[str]]:
        init: list[str] = []
        forward: list[str] = []
        for op in self.body.ops:
            if op.name == "func.return":
                continue
            spec = catalog.by_op(op.name)
            layer = str(op.attributes.get("name", ""))
            kind = spec.name if spec is not None else op.name
            emit = EMITTERS.get(op.name)
            if spec is None or emit is None:
                reason = UNSUPPORTED.get(op.name, "the pytorch target has no emitter for it")
                self._error(f"{TARGET} cannot express {kind} '{layer}': {reason}", op.location)
                continue
            if "." in layer:
                self._error(f"{TARGET} cannot express {kind} '{layer}': a PyTorch submodule "
                            "name cannot contain '.'", op.location)
                continue
            try:
                out = emit(self._ctx(op, spec, names))
            except SearchError as e:
                self._error(str(e), op.location)
                continue
            except EmitError as e:
                self._error(f"{TARGET} cannot express {kind} '{layer}': {e}", op.location)
                continue
            if out.results != len(op.results):
                self._error(f"{TARGET} cannot express {kind} '{layer}': it gives "
                            f"{out.results} results where the graph has {len(op.results)}",
                            op.location)
                continue
            where = describe(op.location, LINE - 10)
            if out.module is not None:
                # A name nn.Module uses itself (train, forward) goes straight into _modules.
                stmt = f"{self.module_ref(layer)} = {out.module}"
                short = f"  # {where.split(' ')[0]}" if where else ""
                if len(stmt) + len(short) + 8 <= LINE:
                    init.append(f"        {stmt}{short}")
                else:
                    init += wrap_line(f"        {stmt}")
            lhs = ", ".join(names[r] for r in op.results)
            if where:
                forward.append(f"        # {where}")
            forward += wrap_line(f"        {lhs} = {out.expr}")
        return init, forward

    # -- the file ---------------------------------------------------------------------------------
    def generate(self) -> str:
        if self.options.hpo:
            try:
                self.plan = plan_hpo(self.model)
            except PlanError as e:
                raise BackendError(e.diagnostics) from None
            self.types = dict(self.plan.types)
        names, args = self._value_names()
        init, forward = self._layers(names)
        outputs = [names[v] for v in self.body.ops[-1].operands]
        training = None
        try:
            writer = TrainingWriter(self.model, self.plan, self.options.precision)
            training = writer.write(input_specs(self.model, args), len(outputs))
        except SectionError as e:
            self._error(f"{TARGET}: {e}", self._section_loc(e.section))
        if self.errors:
            raise BackendError(self.errors)
        assert training is not None
        self.helpers |= training.helpers | {"run_cli"}
        sections = [self._model_code(init, forward, args, outputs), training.code]
        if self.plan is not None:
            sections.append(self._search_code())
        sections += [self._main_code()]
        used = {n.id for n in pyast.walk(pyast.parse("\n\n\n".join(sections)))
                if isinstance(n, pyast.Name)}
        copied = snippet_closure(self.helpers)
        for snippet in copied:
            used |= snippet.names
        sections.insert(1, rule("helpers, copied from neuralc's PyTorch target") + "\n"
                        + "\n\n\n".join(s.source for s in copied))
        rest = "\n\n\n".join(sections)
        head = self._docstring(training.summary)
        return head + "\n\n" + self._imports(used) + "\n\n\n" + rest + "\n"

    def _section_loc(self, section: str) -> Location | None:
        """The text of a training section (loss, optimizer, ...), for an error about it."""
        from neuralc.frontend.parser import parse

        text = source_text(self.model.filename)
        if text is not None:
            for net in parse(text, self.model.filename).networks:
                if net.name == self.model.info.name and section in net.sections:
                    return net.sections[section].span
        return self.func.location

    def _docstring(self, training: list[str]) -> str:
        src = pysource.doc(Path(self.model.filename).name)
        prog = f"{self.stem}.py"
        lines = [
            f'"""{self.cls}: a PyTorch model generated by neuralc from {src}.',
            "",
            "The submodules are named like the .nr layers, so state_dict() keys are neuralc's "
            "weight names",
            "(neuralc's safetensors load with strict=True); forward() takes and returns "
            "channels-last",
            "tensors, one per input in the order they are declared, as the DSL does.",
            "",
            "The weights neuralc compiled in (its --weights, else its seeded initial values) lie "
            "beside this",
            "file under its name, WEIGHTS_FILE (.safetensors): build_model() initialises as "
            "PyTorch does, and",
            "load_weights(model, WEIGHTS_FILE) sets them (strict=True). train starts from them "
            "unless --weights",
            "names others or --no-weights asks for PyTorch's initialisers.",
            "",
            f"    python {prog} train --x x.npy --y y.npy",
            "        [--epochs N] [--out trained.safetensors] [--weights init.safetensors | "
            "--no-weights]",
            "        [--seed N] [--device auto|cpu|cuda]",
            f"    python {prog} predict --x x.npy [--weights w.safetensors] [--out y.npy]",
            f"    python {prog} evaluate --x x.npy --y y.npy [--weights w.safetensors]",
        ]
        if self.plan is not None:
            lines += [f"    python {prog} search --x x.npy --y y.npy --trials N",
                      "        [--write-best best.nr] [--out best.safetensors]",
                      "",
                      "search needs optuna: each trial rebuilds the model with its "
                      "hyperparameters (build_model(hp));",
                      "--write-best writes a copy of the .nr file with the best values "
                      "in place of HPO(...)."]
        lines += ["", *_wrap(pysource.doc(" ".join(training))),
                  "Needs torch, numpy and safetensors" + (" (and optuna to search)."
                                                         if self.plan else "."), '"""']
        return "\n".join(lines)

    def _model_code(self, init: list[str], forward: list[str], args: list[str],
                    outputs: list[str]) -> str:
        hp = self.plan is not None
        out: list[str] = [rule("the model"), f"class {self.cls}(nn.Module):",
                          *docstring(f"The network {self.model.info.name} of "
                                     f"{Path(self.model.filename).name}."), ""]
        if hp:
            out += ["    def __init__(self, hp: dict | None = None) -> None:",
                    "        super().__init__()",
                    "        hp = {**HPARAMS, **(hp or {})}",
                    "        self.hp = hp"]
        else:
            out += ["    def __init__(self) -> None:", "        super().__init__()"]
        out += init
        params = ", ".join(f"{a}: torch.Tensor" for a in args)
        ret = "torch.Tensor" if len(outputs) == 1 else \
            "tuple[" + ", ".join(["torch.Tensor"] * len(outputs)) + "]"
        out += ["", f"    def forward(self, {params}) -> {ret}:"]
        out += forward
        out.append(f"        return {', '.join(outputs)}")
        out += ["", ""]
        if hp:
            out += [f"def build_model(hp: dict | None = None) -> {self.cls}:",
                    *docstring(f"A fresh {self.cls} with the hyperparameters ``hp`` (the .nr "
                               "file's where not given); sizes follow them."),
                    f"    return {self.cls}(hp)"]
        else:
            out += [f"def build_model() -> {self.cls}:",
                    *docstring(f"A fresh {self.cls}, initialised as PyTorch initialises its "
                               "modules (load_weights(model, WEIGHTS_FILE) sets neuralc's)."),
                    f"    return {self.cls}()"]
        out += ["", "",
                "# The weights neuralc compiled in (--weights, or its seeded initial values), "
                "written",
                "# beside this file under its name: neuralc's names, PyTorch's layouts.",
                'WEIGHTS_FILE = Path(__file__).with_suffix(".safetensors")']
        return "\n".join(out)

    def _search_code(self) -> str:
        assert self.plan is not None
        plan = self.plan
        lines = [rule("the hyperparameter search (optuna)"),
                 *py_block("HPARAMS", dict(plan.defaults)),
                 "SEARCH_SPACE = ["]
        for p in plan.params:
            entry = f"    {py(p.as_dict())},"
            if len(entry) <= LINE:
                lines.append(entry)
            else:
                lines += ["    {", *[f"        {py(k)}: {py(v)}," for k, v in p.as_dict().items()],
                          "    },"]
        lines += ["]", f"SAMPLER = {py(plan.sampler)}",
                  "# where each HPO(...) stands in NR_SOURCE (character offsets)",
                  *py_block("NR_SPANS", {p.name: p.spans for p in plan.params}),
                  "NR_SOURCE = ("]
        for line in plan.source.splitlines(keepends=True):  # long lines in parts that fit
            lines += [f"    {py(line[i:i + 80])}" for i in range(0, len(line), 80)]
        lines += [")", "", ""]
        lines += [
            "def search(dataset: Dataset, *, trials: int = 10, seed: int | None = None,",
            "           write_best_to: str | None = None, log: Callable[[str], None] | None = "
            "print,",
            "           **options: Any) -> tuple[Any, nn.Module | None]:",
            *docstring("An Optuna study over the HPO values: every trial rebuilds the model "
                       "with its suggestions and trains it (``options`` go to train()); returns "
                       "the study and the best trial's trained model, and with "
                       "``write_best_to`` writes the .nr file with the best values."),
            "    study, model = hpo_search(",
            "        dataset, SEARCH_SPACE, build_model,",
            "        lambda m, d, **kw: train(m, d, **{**options, **kw}),",
            "        trials=trials, sampler=SAMPLER, seed=seed, log=log)",
            "    if write_best_to is not None:",
            "        write_best(NR_SOURCE, NR_SPANS, study.best_params, write_best_to)",
            "    return study, model"]
        self.helpers |= {"hpo_search", "write_best"}
        return "\n".join(lines)

    def _main_code(self) -> str:
        extra = ", hparams=HPARAMS, search=search" if self.plan else ""
        lines = [
            rule("the command line"),
            "def main(argv: list[str] | None = None) -> int:",
            *docstring(f"``python {self.stem}.py train --x x.npy --y y.npy``, ``predict --x "
                       "x.npy``, ``evaluate --x x.npy --y y.npy`` (see the module docstring)."),
            '    defaults = {"epochs": EPOCHS, "validation_split": VALIDATION_SPLIT, '
            '"device": DEVICE}',
            *wrap_line(f"    return run_cli(argv, prog={py(self.stem)}, inputs=INPUTS, "
                       f"build=build_model, train=train, defaults=defaults, "
                       f"weights_file=WEIGHTS_FILE, evaluate_model=evaluate_model{extra})"),
            "", "",
            'if __name__ == "__main__":',
            "    raise SystemExit(main())",
        ]
        return "\n".join(lines)

    @staticmethod
    def _imports(used: set[str]) -> str:
        """The import lines of the names the file reads, in isort's order."""
        std: list[str] = []
        third: list[str] = []
        froms: dict[str, list[str]] = {}
        for name, stmt in IMPORTS:
            if name not in used:
                continue
            target = third if name in _THIRD_PARTY else std
            if "{}" in stmt:
                module = stmt.split()[1]
                if module not in froms:
                    froms[module] = []
                    target.append(stmt)
                froms[module].append(name)
            else:
                target.append(stmt)
        lines = ["from __future__ import annotations", ""]
        for group in (std, third):
            if not group:
                continue
            lines += [s.format(", ".join(sorted(froms[s.split()[1]]))) if "{}" in s else s
                      for s in group]
            lines.append("")
        return "\n".join(lines).rstrip()


def _wrap(text: str, width: int = LINE - 4) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return lines


def generate(model: CompiledModel, options: BackendOptions) -> tuple[str, Generator]:
    """The module's source text for ``model`` (raises BackendError with located diagnostics)."""
    gen = Generator(model, options)
    return gen.generate(), gen
