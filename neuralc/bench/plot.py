"""``--plot out.png``: latency bars per target and peer, and a roofline chart of the kernels.

matplotlib is an optional extra (``pip install 'neuralc[plot]'``); :func:`require` says so
before any cell runs. The figure is drawn with the Agg backend (no display needed).

- Left: one group of bars per (batch, precision), one bar per target and peer that ran
  correctly, its height the median latency, its whisker the 10th to 90th percentile.
- Right (with ``--kernels``): log-log roofline at the kernels' thread count, the FMA ceiling and one
  bandwidth diagonal per memory level; each fused kernel a point at (FLOPs/byte, GFLOP/s),
  and the ``-O0`` kernels as faint crosses, so fusion's move up and right is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuralc.driver import UsageError

LABELLED = 4  # kernels named on the roofline, slowest first, per kernel table


def require() -> None:
    """A usage error naming the extra when matplotlib is not installed."""
    from neuralc.backends.select import has_module

    if not has_module("matplotlib"):
        raise UsageError("--plot needs matplotlib: pip install 'neuralc[plot]'")


def _latency(ax: Any, result: dict[str, Any]) -> None:
    cells = [c for c in result["cells"] if c["status"] == "ok"]
    groups = list(dict.fromkeys(f"b{c['batch']} {c['precision']}" for c in cells))
    runners = list(dict.fromkeys(c["runner"] for c in cells))
    width = 0.8 / max(len(runners), 1)
    for j, runner in enumerate(runners):
        xs, ys, lo, hi = [], [], [], []
        for i, g in enumerate(groups):
            c = next((c for c in cells if c["runner"] == runner
                      and f"b{c['batch']} {c['precision']}" == g), None)
            if c is None:
                continue
            lat = c["latency_ms"]
            xs.append(i + j * width)
            ys.append(lat["median"])
            lo.append(lat["median"] - lat["p10"])
            hi.append(lat["p90"] - lat["median"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=runner)
    ax.set_xticks([i + width * (len(runners) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_ylabel("latency per inference (ms, median; p10-p90)")
    medians = [c["latency_ms"]["median"] for c in cells]
    if medians and max(medians) > 20 * min(medians):  # a log axis only where bars differ
        ax.set_yscale("log")
    ax.set_title(f"{result['model']['network']}: targets and peers")
    ax.legend(fontsize="small")


def _roofline(ax: Any, result: dict[str, Any]) -> None:
    ceilings = result.get("ceilings") or {}
    points = [(r, k) for k in result["kernels"] if k["status"] == "ok"
              for r in k["fused"]["kernels"] if r.get("gflops") and r.get("intensity")]
    faint = [r for k in result["kernels"] if k["status"] == "ok"
             for r in k["unfused"]["kernels"] if r.get("gflops") and r.get("intensity")]
    xs = [r["intensity"] for r, _ in points] + [r["intensity"] for r in faint]
    lo, hi = (min(xs) / 4, max(xs) * 4) if xs else (0.01, 100.0)
    if "fma" in ceilings:
        peak = ceilings["fma"]["gflops"]
        ax.axhline(peak, color="black", lw=1)
        ax.text(hi, peak, f" FMA {peak:.0f}", va="bottom", ha="right", fontsize="small")
        for level in ceilings["copy"]:
            bw = level["gbs"]
            knee = peak / bw
            ax.plot([lo, min(knee, hi)], [lo * bw, min(knee, hi) * bw], lw=0.8)
            ax.text(lo, lo * bw, f"{level['level']} {bw:.0f} GB/s", fontsize="x-small")
    if faint:
        ax.scatter([r["intensity"] for r in faint], [r["gflops"] for r in faint], marker="x",
                   alpha=0.35, color="grey", label="-O0 kernels")
    import math

    named: list[tuple[float, float]] = []

    def crowded(x: float, y: float) -> bool:
        """A label already within a fifth of a decade both ways."""
        return any(abs(math.log10(x / a)) < 0.2 and abs(math.log10(y / b)) < 0.2
                   for a, b in named)

    for k in result["kernels"]:
        if k["status"] != "ok":
            continue
        rows = [r for r, kk in points if kk is k]
        ax.scatter([r["intensity"] for r in rows], [r["gflops"] for r in rows], s=22,
                   label=f"batch {k['batch']} {k['precision']} (-O{k['fused']['opt']})")
        for r in rows[:LABELLED]:  # the slowest kernels (rows are sorted by time)
            if not crowded(r["intensity"], r["gflops"]):
                named.append((r["intensity"], r["gflops"]))
                ax.annotate(r["name"], (r["intensity"], r["gflops"]), fontsize="x-small",
                            xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    ax.set_ylabel("GFLOP/s")
    threads = ceilings.get("threads", 1)
    ax.set_title(f"fused kernels on the roofline ({threads} thread{'s' * (threads != 1)})")
    ax.legend(fontsize="small", loc="lower right")


def write_plot(result: dict[str, Any], path: str | Path) -> None:
    """Draw the latency bars (and the roofline when kernels were timed) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_roofline = any(k["status"] == "ok" for k in result["kernels"])
    fig, axes = plt.subplots(1, 2 if with_roofline else 1,
                             figsize=(13 if with_roofline else 7, 5), squeeze=False)
    _latency(axes[0][0], result)
    if with_roofline:
        _roofline(axes[0][1], result)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
