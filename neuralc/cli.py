"""The ``neuralc`` driver.

    neuralc MODEL.nr [--emit graph-ir] [-O2] [--target T] [-o OUT]   compile
    neuralc check MODEL.nr                                            shape table
    neuralc run MODEL.nr --input x.npy [--weights w.safetensors]      run the reference
    neuralc MODEL.nr --target auto -o model.ncz                       write an artifact
    neuralc run model.ncz --input x.npy [--device D] [-v]             run it, no .nr needed
    neuralc opt FILE.nir --passes=shape-infer                         passes on textual IR
    neuralc layers [--markdown]                                       the layer catalog
    neuralc bench MODEL.nr [--targets cpu,onnx] [--peers torch] [--kernels]   benchmarks

Exit status: 0 on success, 1 on errors in the model, its weights or its inputs, 2 on bad usage.
No Python traceback reaches the user for any of those.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from neuralc.diagnostics import CompileError, one_line, render_all
from neuralc.ir.types import PRECISIONS

EXIT_OK, EXIT_MODEL, EXIT_USAGE = 0, 1, 2

# Targets the compiler knows of; neuralc.backends.registry says which are built.
ALL_TARGETS = ("auto", "reference", "cpu", "cuda", "tensorrt", "onnx", "pytorch", "keras")


class _Parser(argparse.ArgumentParser):
    """argparse, but exiting with status 2 and a one-line hint, as for any usage error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"neuralc: error: {one_line(message)}\n")
        raise SystemExit(EXIT_USAGE)


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, else a one-line usage error."""

    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return convert


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "a non-negative integer")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", metavar="NAME", help="the network to use when the file has several")
    p.add_argument(
        "--hparam",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a hyperparameter (e.g. dense.units=128); repeatable",
    )


def _opt_level(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-O",
        dest="opt",
        type=int,
        default=2,
        choices=range(4),
        metavar="{0,1,2,3}",
        help="optimisation level (default 2). reference, cpu, cuda and --emit tensor-ir/"
        "kernels: -O0 one kernel per op, -O1 drops inference identities (Dropout), cleans up "
        "and fuses, -O2 also folds BatchNorm into conv/dense weights, -O3 also picks the "
        "target's conv layout. onnx: -O0 is the literal translation; -O1 and above drop "
        "inference identities, fold BatchNorm into conv/dense weights and fold shape "
        "arithmetic into constants. pytorch and keras write the model as written (they train "
        "it) at every level",
    )


def _ir_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print-ir-before", metavar="PASS|all", action="append", default=[])
    p.add_argument("--print-ir-after", metavar="PASS|all", action="append", default=[])
    p.add_argument("--time-passes", action="store_true", help="print the time each pass took")
    p.add_argument(
        "--dump-dir", metavar="DIR", type=Path, help="write the IR after every pass here"
    )
    p.add_argument(
        "--passes", metavar="A,B,...", help="run these passes instead of the -O pipeline"
    )


def _weights_layout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights-layout", choices=("neuralc", "torch"), default="neuralc",
                   help="torch: the weights come from a PyTorch model that flattens NCHW; the "
                   "Dense after a Flatten of a spatial map is permuted to neuralc's "
                   "channels-last order (default neuralc)")


def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", "-w", metavar="FILE", help="weights (.safetensors) to compile in")
    _weights_layout(p)
    p.add_argument("--seed", type=_non_negative, default=0, help="seed of the initial weights")
    p.add_argument("--no-cache", action="store_true",
                   help="cpu target: compile afresh, bypassing the native code cache")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, at most 26)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="numeric precision (default: the model's execution { precision }, "
                   "else fp32)")
    p.add_argument("--keep-io-fp32", action="store_true",
                   help="with --precision fp16: keep float32 inputs and outputs")
    p.add_argument("--hpo", action="store_true",
                   help="pytorch target: add an Optuna search over the model's HPO values")


class _Version(argparse.Action):
    """``--version``: the version and where compiled code is cached (printed unwrapped)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from neuralc.backends.cpu.cache import cache_dir
        from neuralc.runtime.artifact import neuralc_version

        sys.stdout.write(f"neuralc {neuralc_version()}\nnative code cache: {cache_dir()}\n")
        raise SystemExit(EXIT_OK)


def _edge_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cpu target: machines and edge builds (--emit exe|lib|obj)")
    g.add_argument("--triple", metavar="TRIPLE",
                   help="the machine to compile for: x86_64-linux-gnu or aarch64-linux-gnu "
                   "(default: this machine); -musl implies --static")
    g.add_argument("--cpu", metavar="CPU",
                   help="host, x86-64 (baseline), x86-64-v3 (AVX2), or for aarch64: generic, "
                   "cortex-a76, neoverse-n1 (default: host, or the triple's baseline)")
    g.add_argument("--static", action="store_true",
                   help="link the C library statically (no shared library at all)")
    g.add_argument("--external-weights", action="store_true",
                   help="write the weights beside the binary (.safetensors), read at start, "
                   "instead of embedding them")
    g.add_argument("--prefix", metavar="NAME",
                   help="prefix of the C symbols of lib and obj (default: the network's name "
                   "in lower case)")


def _cuda_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cuda target (Triton kernels; see the README's cuda section)")
    g.add_argument("--allow-tf32", action="store_true",
                   help="float32 matmuls, convolutions and attention on tensor cores in TF32 "
                   "(inputs rounded to 10-bit mantissas) instead of IEEE float32")
    g.add_argument("--arch", metavar="sm_80,sm_90",
                   help="compile every kernel ahead of time for these GPU architectures "
                   "(no GPU needed): -o FILE.cubins, or the cuda entries of -o FILE.ncz "
                   "(default there: this machine's GPUs)")
    g.add_argument("--autotune", action="store_true",
                   help="on a GPU: time each kernel's candidate launch configurations and keep "
                   "the fastest (cached per kernel, Triton version and GPU; shipped in "
                   "-o FILE.ncz)")
    g.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="-o FILE.ncz: whether the loaded artifact replays CUDA graphs (one per "
                   "set of input sizes; default on)")


def build_parser() -> dict[str, argparse.ArgumentParser]:
    compile_p = _Parser(
        prog="neuralc",
        description="Compile a Neural DSL model.",
        epilog="subcommands: check, run, opt, layers, bench (neuralc SUBCOMMAND -h)",
    )
    compile_p.add_argument("--version", action=_Version, nargs=0,
                           help="print the version and the native code cache's location")
    compile_p.add_argument("model", help="the .nr model file")
    compile_p.add_argument(
        "--emit", choices=("graph-ir", "tensor-ir", "kernels", "loop-ir", "llvm", "asm", "exe",
                           "lib", "obj"),
        default=None,
        help="graph-ir (the default except for --target cpu; shape-checked layers), tensor-ir "
        "(after the -O pipeline), kernels (the fused kernels with their ops and source "
        "lines), loop-ir (the loop nests of each kernel), llvm (the default of --target "
        "cpu: LLVM IR for this CPU), asm (its assembly); cpu target: exe (a standalone "
        "executable), lib (a shared library and its C header), obj (a relocatable object and "
        "its C header)")
    compile_p.add_argument("--debug-fusion", action="store_true",
                           help="say why each rejected pair of ops was not fused")
    compile_p.add_argument(
        "--target",
        default="auto",
        choices=ALL_TARGETS,
        help="backend (default auto: the graph IR for the reference; with -o FILE.ncz, an "
        "artifact holding every variant built here)",
    )
    compile_p.add_argument("-o", "--output", metavar="FILE",
                           help="write the result here (FILE.ncz: a compiled artifact)")
    _backend_options(compile_p)
    _edge_options(compile_p)
    _cuda_options(compile_p)
    _opt_level(compile_p)
    _common(compile_p)
    _ir_debug(compile_p)

    check_p = _Parser(prog="neuralc check", description="Check a model and print its shape table.")
    check_p.add_argument("model")
    check_p.add_argument("--report", action="store_true",
                         help="also optimise at the -O level and report kernels, bytes moved "
                         "and peak memory")
    check_p.add_argument("--precision", default=None, choices=PRECISIONS)
    check_p.add_argument("--target", default="reference",
                         choices=("reference", "cpu", "cuda", "tensorrt"),
                         help="with --report: the target whose -O pipeline is reported (the "
                         "cpu target decomposes attention and packs weights, which changes "
                         "its kernels and arena)")
    _opt_level(check_p)
    _common(check_p)

    run_p = _Parser(prog="neuralc run",
                    description="Run a model (.nr) or a compiled artifact (.ncz).")
    run_p.add_argument("model", help="the .nr model file, or a .ncz artifact")
    run_p.add_argument(
        "--input",
        "-i",
        metavar="FILE|NAME=FILE",
        action="append",
        default=[],
        help=".npy input; NAME=FILE for named inputs; once per input",
    )
    run_p.add_argument("--random", action="store_true", help="run on a seeded random input")
    run_p.add_argument("--batch", type=_positive, default=None,
                       help="batch size of --random (default 2, moved into the model's range)")
    run_p.add_argument(
        "--dim",
        metavar="NAME=N",
        action="append",
        default=[],
        help="size of a named symbolic dim for --random",
    )
    run_p.add_argument("--weights", "-w", metavar="FILE", help="weights (.safetensors)")
    _weights_layout(run_p)
    run_p.add_argument(
        "--save-weights", metavar="FILE", help="save the weights used (.safetensors)"
    )
    run_p.add_argument("--seed", type=_non_negative, default=0,
                       help="seed of initial weights and --random")
    run_p.add_argument("--target", default=None, choices=ALL_TARGETS,
                       help="where to run: reference (default: neuralc's numpy interpreter), "
                       "onnx (onnxruntime), cpu (native code for this CPU), cuda and tensorrt "
                       "(on an NVIDIA GPU), or auto (the best of these this machine runs); "
                       "pytorch and keras write source code, which runs with its own tools; for "
                       "a .ncz artifact, the variant to run (default: the best this machine "
                       "runs)")
    run_p.add_argument("--device", metavar="auto|cpu|cuda|cuda:N", default=None,
                       help="the device to run on (default: the model's execution { device }); "
                       "a warning says when it cannot be honoured")
    run_p.add_argument("-v", "--verbose", action="store_true",
                       help="print the selection report: what runs where, and why")
    run_p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    run_p.add_argument("--precision", default=None, choices=PRECISIONS)
    run_p.add_argument("--keep-io-fp32", action="store_true")
    run_p.add_argument("--no-cache", action="store_true",
                       help="cpu target: compile afresh, bypassing the native code cache")
    run_p.add_argument("-o", "--output", metavar="FILE", help="save the output (.npy)")
    run_p.add_argument("--graph", action="store_true",
                       help="reference target: run the graph IR instead of the optimised tensor IR")
    _opt_level(run_p)
    _common(run_p)

    opt_p = _Parser(prog="neuralc opt", description="Run passes on textual IR (.nir).")
    opt_p.add_argument("file", help="textual IR file, or - for standard input")
    opt_p.add_argument("--verify-each", action="store_true", help="verify the IR after every pass")
    opt_p.add_argument("-o", "--output", metavar="FILE")
    _ir_debug(opt_p)

    layers_p = _Parser(prog="neuralc layers", description="List the layer catalog.")
    layers_p.add_argument("--markdown", action="store_true", help="the language reference table")

    cache_p = _Parser(prog="neuralc cache",
                      description="Where the native code cache is, what it holds; --clear empties "
                      "it.")
    cache_p.add_argument("--clear", action="store_true", help="remove every cached object")
    from neuralc.bench.options import add_arguments as bench_arguments

    bench_p = _Parser(prog="neuralc bench",
                      description="Time a model on neuralc's targets and against PyTorch, "
                      "torch.compile and onnxruntime; --kernels: each fused kernel.")
    bench_arguments(bench_p)
    _common(bench_p)
    return {"compile": compile_p, "check": check_p, "run": run_p, "opt": opt_p, "layers": layers_p,
            "cache": cache_p, "bench": bench_p}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsers = build_parser()
    cmd = argv[0] if argv and argv[0] in parsers and argv[0] != "compile" else "compile"
    if argv and argv[0] == "compile":
        argv = argv[1:]
    args = parsers[cmd].parse_args(argv[1:] if cmd != "compile" else argv)
    from neuralc import commands
    from neuralc.backends.base import BackendError, BackendUnavailable
    from neuralc.driver import UsageError
    from neuralc.limits import MEMORY, LimitSettingError
    from neuralc.runtime.artifact import ArtifactError

    def fail(e: object, status: int) -> int:
        sys.stderr.write(f"neuralc: error: {one_line(str(e))}\n")
        return status

    try:
        return getattr(commands, f"cmd_{cmd}")(args)
    except CompileError as e:
        sys.stderr.write(render_all(e.diagnostics) + "\n")
        return EXIT_MODEL
    except commands.DataError as e:
        return fail(e, EXIT_MODEL)
    except ArtifactError as e:  # damaged, tampered, foreign, or no variant runs here
        return fail(e, EXIT_MODEL)
    except (UsageError, LimitSettingError) as e:
        return fail(e, EXIT_USAGE)
    except BackendError as e:
        sys.stderr.write(render_all(e.diagnostics) + "\n")
        return EXIT_MODEL
    except BackendUnavailable as e:
        return fail(e, EXIT_USAGE)
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:  # a file the user named could not be written or read (e.g. --dump-dir)
        return fail(e, EXIT_USAGE)
    except MemoryError:
        # Runs are refused beforehand when their estimate passes the limit; this is what is
        # left when the machine has less free memory than the limit allows.
        return fail(f"out of memory; this machine could not provide what the run needed "
                    f"(neuralc allows up to {MEMORY.show()}: set {MEMORY.env} lower to be "
                    "refused earlier)", EXIT_MODEL)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
