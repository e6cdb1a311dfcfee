"""Runs mutants of the examples through the CLI in one process and reports each outcome.

    python fuzz_runner.py SEED COUNT OUTDIR [--deep]

Mutants are the examples with the slips people make (text deleted, inserted, duplicated,
control characters) and the structural bombs of issue 16: deep nesting, huge repeats and
nested repeats, macro chains and fan-outs, long operator chains, huge numbers, huge files,
floods of errors. Each mutant runs as ``neuralc check`` (with ``--deep`` also ``--emit
tensor-ir -O3`` and ``run --random``) under an alarm of BOUND seconds; one JSON line per
command reports its exit status, stderr and time, or the exception that escaped ``main``.
The caller (test_bomb_fuzz.py) runs this under a memory limit and judges the lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from neuralc.limits import SOURCE_BYTES

EXAMPLES = {p.name: p.read_text() for p in
            sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.nr"))}
BOUND = 30  # seconds per command (the bound)

SNIPPETS = ["(", ")", "{", "}", ",", ":", "=", "*", "$", '"', "-", "..", "0", "-1", "1e9",
            "\n", "/*", "//", "HPO(", "[", "]", "* 0", "* 3", "\x00", "\x0c", "\r", "\u2028",
            "\x1b[31m", "ﬁ", "\t"]


class Timeout(Exception):
    """A command passed BOUND seconds."""


def _layer_lines(text: str) -> list[int]:
    """Indices of lines that hold a layer call (a capitalised name and '(')."""
    return [i for i, ln in enumerate(text.split("\n"))
            if ln.strip()[:1].isupper() and "(" in ln and ":" not in ln]


def _at_layer(rng: random.Random, text: str, edit: Callable[[str], str]) -> str:
    lines = text.split("\n")
    where = _layer_lines(text)
    if not where:
        return text
    i = rng.choice(where)
    lines[i] = edit(lines[i])
    return "\n".join(lines)


def _prepend(text: str, defines: str) -> str:
    return defines + "\n" + text


def _first_layer(text: str) -> str:
    lines = text.split("\n")
    where = _layer_lines(text)
    return lines[where[0]].strip() if where else "Dense(4)"


def bomb(rng: random.Random, text: str, deep: bool) -> tuple[str, str]:
    """One structural bomb: (kind, mutated text)."""
    kind = rng.choice(["nesting", "brackets", "repeat", "nested_repeat", "macro_chain",
                       "fan_out", "operators", "number", "file", "errors"])
    layer = _first_layer(text)
    if kind == "nesting":
        d = rng.choice([5, 40, 62, 65, 200, 5000])
        return kind, _at_layer(rng, text, lambda ln: "Residual { " * d + ln + " }" * d)
    if kind == "brackets":
        d = rng.choice([10, 61, 65, 1000, 20000])
        return kind, _at_layer(rng, text, lambda ln: ln.replace("(", "(" + "(" * d, 1)
                               .replace(")", ")" + ")" * d, 1))
    if kind == "repeat":
        n = rng.choice(["2", "999", "10000", "10001", "1000000", "1" + "0" * 30, "0", "-1"])
        return kind, _at_layer(rng, text, lambda ln: f"{ln} * {n}")
    if kind == "nested_repeat":
        a, b = rng.choice([(3, 3), (100, 100), (10000, 10000), (101, 100)])
        return kind, _at_layer(rng, _prepend(text, f"define Rep {{ {layer} * {a} }}"),
                               lambda ln: f"{ln} Rep * {b}")
    if kind == "macro_chain":
        n = rng.choice([10, 63, 64, 65, 1000])
        chain = "".join(f"define C{i} {{ C{i + 1}() }}\n" for i in range(n))
        chain += f"define C{n} {{ {layer} }}"
        return kind, _at_layer(rng, _prepend(text, chain), lambda ln: f"{ln} C0()")
    if kind == "fan_out":
        k = rng.choice([3, 10, 14, 20, 30])
        fan = f"define F0 {{ {layer} }}\n" + "".join(
            f"define F{j} {{ F{j - 1}() F{j - 1}() }}\n" for j in range(1, k + 1))
        return kind, _at_layer(rng, _prepend(text, fan), lambda ln: f"{ln} F{k}()")
    if kind == "operators":
        n = rng.choice([10, 63, 65, 3000])
        define = "define Op(u) { Dense(" + " + ".join(["$u"] * n) + ") }"
        return kind, _at_layer(rng, _prepend(text, define), lambda ln: f"{ln} Op(1)")
    if kind == "number":
        big = rng.choice(["9" * 20, "9" * 101, "9" * 5000, "1e308", "1e309", "1e-400",
                          "99999999977", str(2**63), "100000", "65536"])
        return kind, _at_layer(rng, text, lambda ln: "".join(
            big if c.isdigit() and rng.random() < 0.5 else c for c in ln))
    if kind == "file":
        limit = SOURCE_BYTES.value  # over it (refused at once); in deep runs, near it
        size = rng.choice([2_000, limit + 50_000] + ([60_000, limit - 20_000] if deep else []))
        filler = f"    {layer}\n"
        body = filler * (size // len(filler) + 1)
        return kind, text.replace("layers:", "layers:\n" + body, 1)
    count = rng.choice([50, 500, 5000])
    return kind, _at_layer(rng, text, lambda ln: ln + "\n    Dense(4))" * count)


def slip(rng: random.Random, text: str) -> str:
    """The ordinary mutations: delete, insert, replace, duplicate, truncate."""
    for _ in range(rng.randint(1, 4)):
        n = len(text)
        i = rng.randint(0, n)
        j = rng.randint(i, min(n, i + 12))
        kind = rng.choice(["delete", "insert", "replace", "duplicate", "truncate"])
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + rng.choice(SNIPPETS) + text[i:]
        elif kind == "replace":
            text = text[:i] + rng.choice(SNIPPETS) + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i]
    return text


def mutant(seed: int, deep: bool) -> tuple[str, str, str]:
    """(example, kind, text) of mutant ``seed``: a bomb, a slip, or both."""
    rng = random.Random(seed)
    name = rng.choice(sorted(EXAMPLES))
    text, kinds = EXAMPLES[name], []
    if rng.random() < 0.8:
        kind, text = bomb(rng, text, deep)
        kinds.append(kind)
    if rng.random() < 0.4 or not kinds:
        text = slip(rng, text)
        kinds.append("slip")
    return name, "+".join(kinds), text


def _alarm(signum: int, frame: object) -> None:
    raise Timeout


def run_command(argv: list[str]) -> dict:
    from neuralc.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    signal.alarm(BOUND)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code: object = main(argv)
            except SystemExit as e:
                code = e.code
    except Timeout:
        code = "timeout"
    except BaseException:  # noqa: BLE001 - what escaped main is the finding
        code = "crash"
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
    return {"argv": argv, "code": code, "seconds": round(time.perf_counter() - t0, 2),
            "stderr": err.getvalue()[:200_000]}


def main() -> None:
    seed, count, outdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    deep = "--deep" in sys.argv
    signal.signal(signal.SIGALRM, _alarm)
    for i in range(count):
        name, kind, text = mutant(seed * 1_000_003 + i, deep)
        path = outdir / f"mutant_{i}.nr"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        commands = [["check", str(path)]]
        if deep:
            commands += [[str(path), "--emit", "tensor-ir", "-O3", "-o", str(outdir / "t.nir")],
                         ["run", str(path), "--random"]]
        for argv in commands:
            result = run_command(argv)
            print(json.dumps({"mutant": i, "example": name, "kind": kind, **result}),
                  flush=True)


if __name__ == "__main__":
    main()
