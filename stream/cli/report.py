"""``riverbed report --out FILE.png``: metrics over the stream, with drift and promotions marked.

The plot is drawn from the checkpoint alone: the bounded metrics history kept in its meta
(:mod:`stream.engine.history`), the drift detections (``"drift"``) and the champion/challenger
promotions (``"promotions"``). One panel per metric; per model, the rolling metric as a solid
line and the cumulative (prequential) metric as a dashed line of the same colour; drift
detections as dotted vertical lines, promotions as solid green ones. The x axis is the stream
position (events seen), so the same input always gives the same picture; the y range leaves out
the first 3% of the stream, where warm-up values would flatten everything else.

matplotlib runs with its Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from stream.errors import RiverbedError

DRIFT_COLOR = "#d62728"
PROMOTION_COLOR = "#2ca02c"


def metric_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every metric named in the history, in first-seen order."""
    names: dict[str, None] = {}
    for point in points:
        for model in point.get("models", {}).values():
            for key in ("rolling_metrics", "metrics"):
                for name in model.get(key) or {}:
                    names.setdefault(name, None)
    return list(names)


def render_report(meta: Mapping[str, Any], out: str | Path, *, metrics: Sequence[str] | None = None,
                  title: str | None = None) -> Path:
    """Write the report plot of checkpoint ``meta`` to ``out`` (PNG, or any format by suffix)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    points = list((meta.get("history") or {}).get("points", []))
    if not points:
        raise RiverbedError(
            "the checkpoint holds no metrics history yet: it grows as labels are learned "
            "(one point every few labels); run riverbed until some labels have been learned"
        )
    available = metric_names(points)
    names = list(metrics) if metrics else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise RiverbedError(f"no history of metric(s) {', '.join(unknown)}; the history has: {', '.join(available)}")
    models = list(dict.fromkeys(name for p in points for name in p.get("models", {})))
    drift = list(meta.get("drift") or [])
    promotions = list(meta.get("promotions") or [])
    serving = meta.get("serving")

    fig, axes = plt.subplots(len(names), 1, figsize=(10, 3.2 * len(names) + 0.8), sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first, last_position = points[0]["position"], points[-1]["position"]
    warm_up = first + 0.03 * (last_position - first)  # the y range ignores the first 3% of the stream
    for ax, metric in zip(axes[:, 0], names):
        settled: list[float] = []
        for i, model in enumerate(models):
            color = colors[i % len(colors)]
            label = f"{model} (serving)" if model == serving else model
            for key, style, suffix in (("rolling_metrics", "-", "rolling"), ("metrics", "--", "cumulative")):
                xs, ys = [], []
                for p in points:
                    value = (p.get("models", {}).get(model, {}).get(key) or {}).get(metric)
                    if value is not None:
                        xs.append(p["position"])
                        ys.append(value)
                settled.extend(y for x, y in zip(xs, ys) if x >= warm_up)
                if xs:
                    ax.plot(xs, ys, style, color=color, linewidth=1.6 if suffix == "rolling" else 1.1,
                            label=f"{label}, {suffix}")
        for j, d in enumerate(drift):
            if d.get("position") is not None:
                ax.axvline(d["position"], color=DRIFT_COLOR, linestyle=":", linewidth=1.2,
                           label="drift detected" if j == 0 else None)
        for j, p in enumerate(promotions):
            if p.get("position") is not None:
                ax.axvline(p["position"], color=PROMOTION_COLOR, linestyle="-", linewidth=1.5, alpha=0.8,
                           label="promotion" if j == 0 else None)
                ax.annotate(f"{p.get('from', '?')} → {p.get('to', '?')}", (p["position"], 1.0),
                            xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                            fontsize=8, color=PROMOTION_COLOR)
        if settled:
            low, high = min(settled), max(settled)
            pad = (high - low) * 0.08 or 0.05
            ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1, 0].set_xlabel("events seen (stream position)")
    last = points[-1]
    fig.suptitle(title or f"riverbed: {last.get('labels', 0):,} labels learned over {last['position']:,} events")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
