"""``neuralc bench``: parse, run, print the tables, write the files; the exit status.

Exit 0 when every cell that ran was correct (skipped targets, absent peers and targets that
cannot express the model do not fail a run), 1 when a cell was wrong, failed, crashed or timed
out (its table row and the result file say which), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

from neuralc.bench.config import usage_error


def cmd_bench(args: argparse.Namespace, data_error: type[Exception]) -> int:
    """Run the benchmark ``args`` ask for. ``data_error`` is the CLI's exception for bad
    weights or inputs (exit 1)."""
    from neuralc.bench.options import config_from_args
    from neuralc.bench.run import failures, run_bench
    from neuralc.bench.table import format_markdown, format_text
    from neuralc.runtime.signature import InputError
    from neuralc.runtime.weights import WeightsError

    config = config_from_args(args)
    try:
        result = run_bench(config, progress=None)
    except (InputError, WeightsError) as e:
        raise data_error(str(e)) from None
    sys.stdout.write(format_text(result))
    _write(config.json, json.dumps(result, indent=1) + "\n", "--json")
    _write(config.markdown, format_markdown(result), "--markdown")
    if config.plot:
        from neuralc.bench.plot import write_plot

        try:
            write_plot(result, config.plot)
        except (OSError, ValueError) as e:
            raise usage_error(f"--plot {config.plot}: {e}") from None
        print(f"wrote {config.plot}")
    failed = failures(result)
    if failed:
        sys.stderr.write(f"neuralc: error: {len(failed)} cell(s) failed: {', '.join(failed)}\n")
        return 1
    return 0


def _write(path: str | None, text: str, flag: str) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise usage_error(f"{flag}: cannot write {path}: {e.strerror}") from None
    print(f"wrote {path}")
