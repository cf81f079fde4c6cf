"""Plots of the paper's figures: loss curves of both stages (Figure 4), pretraining-size sweep (Figure 3).

Each plot is written as a PNG and, beside it, as the data it shows (JSON), so that a figure
can be redrawn or checked without rerunning anything. matplotlib is imported only when a
plot is drawn, with the non-interactive ``Agg`` backend.

>>> data = loss_curve_data({"stage1": [{"step": 1, "loss": 2.0}], "stage2": [{"step": 1, "loss": 1.5}]})
>>> [(s["stage"], s["x"], s["loss"]) for s in data["series"]]
[('stage1', [1], [2.0]), ('stage2', [2], [1.5])]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medvqa._io import atomic_write_bytes, atomic_write_json

__all__ = ["loss_curve_data", "plot_loss_curves", "plot_sweep", "sweep_plot_data"]


def loss_curve_data(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The data of the loss-curve plot: one series per stage on one continuous step axis.

    Stages are laid end to end in the order given: stage 2's first step follows stage 1's
    last, as in the paper's Figure 4. Validation losses, when present, get their own series.

    Args:
        histories: Stage name → loss-history rows (each with ``step`` and ``loss`` and/or
            ``eval_loss``), as in ``StageResult.loss_history`` or ``loss_history.json``.

    Returns:
        A dict with ``series`` (one per stage: ``stage``, ``x``, ``step``, ``loss``),
        ``eval_series`` (the same with ``eval_loss``) and ``boundaries`` (the ``x`` where each
        later stage starts).
    """
    series: list[dict[str, Any]] = []
    eval_series: list[dict[str, Any]] = []
    boundaries: list[int] = []
    offset = 0
    for i, (stage, rows) in enumerate(histories.items()):
        train = [r for r in rows if r.get("loss") is not None]
        evals = [r for r in rows if r.get("eval_loss") is not None]
        if i > 0:
            boundaries.append(offset)
        series.append(
            {
                "stage": stage,
                "x": [offset + int(r["step"]) for r in train],
                "step": [int(r["step"]) for r in train],
                "loss": [float(r["loss"]) for r in train],
            }
        )
        if evals:
            eval_series.append(
                {
                    "stage": stage,
                    "x": [offset + int(r["step"]) for r in evals],
                    "step": [int(r["step"]) for r in evals],
                    "eval_loss": [float(r["eval_loss"]) for r in evals],
                }
            )
        last = max([int(r["step"]) for r in rows] or [0])
        offset += last
    return {"series": series, "eval_series": eval_series, "boundaries": boundaries}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_loss_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    title: str = "Training loss of both stages",
    data_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Draw the training loss of each stage on one axis (the paper's Figure 4).

    Writes ``path`` (PNG) and the plotted data beside it (same name, ``.json``).

    Args:
        histories: Stage name → loss-history rows (see :func:`loss_curve_data`).
        path: The PNG file to write.
        title: The plot title.
        data_path: Where the plotted data goes (default: ``path`` with suffix ``.json``).

    Returns:
        The PNG path.
    """
    target = Path(path)
    data = loss_curve_data(histories)
    legend = bool(data["series"] or data["eval_series"])
    with _figure(target, data, title=title, data_path=data_path, legend=legend) as ax:
        # One marker rule for the whole figure, so that the stages look alike.
        dense = any(len(s["x"]) >= 60 for s in data["series"])
        for s in data["series"]:
            ax.plot(s["x"], s["loss"], marker=None if dense else ".", label=f"{s['stage']} (train)")
        for s in data["eval_series"]:
            ax.plot(s["x"], s["eval_loss"], linestyle="--", marker="o", label=f"{s['stage']} (validation)")
        for b in data["boundaries"]:
            ax.axvline(b, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("optimizer step (stages laid end to end)")
        ax.set_ylabel("loss")
    return target


@contextmanager
def _figure(
    target: Path,
    data: Mapping[str, Any],
    *,
    title: str,
    data_path: str | os.PathLike[str] | None,
    legend: bool,
) -> Iterator[Any]:
    """Write the plotted data, then give the axes of a new figure to draw on; afterwards
    title it (with a legend when asked), add the grid and save the PNG at ``target``."""
    atomic_write_json(Path(data_path) if data_path else target.with_suffix(".json"), {"title": title, **data})
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        yield ax
        ax.set_title(title)
        if legend:
            ax.legend()
        ax.grid(alpha=0.3)
        _save(fig, target)
    finally:
        plt.close(fig)


def sweep_plot_data(
    rows: Sequence[Mapping[str, Any]], *, metrics: Sequence[str], size_key: str = "stage1_size"
) -> dict[str, Any]:
    """The data of the sweep plot: for each metric, its value (and interval) per pretraining size.

    >>> d = sweep_plot_data([{"stage1_size": 0, "paper/containment": 0.5},
    ...                      {"stage1_size": 7000, "paper/containment": 0.6}], metrics=["paper/containment"])
    >>> d["sizes"], d["series"][0]["value"]
    ([0, 7000], [0.5, 0.6])
    """
    ordered = sorted(rows, key=lambda r: int(r[size_key]))
    series = []
    for m in metrics:
        series.append(
            {
                "metric": m,
                "value": [None if r.get(m) is None else float(r[m]) for r in ordered],
                "ci_low": [r.get(f"{m}:ci_low") for r in ordered],
                "ci_high": [r.get(f"{m}:ci_high") for r in ordered],
            }
        )
    return {"sizes": [int(r[size_key]) for r in ordered], "series": series}


def plot_sweep(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str],
    size_key: str = "stage1_size",
    title: str = "Score against stage-1 (pretraining) size",
    data_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Draw each metric against the stage-1 size (the paper's Figure 3), with intervals when given.

    Writes ``path`` (PNG) and its data (``.json``, or ``data_path``). Sizes are spaced evenly and labelled with
    their value (0, 7K, 20K, 55K), since 0 has no place on a log axis. With several metrics,
    each series is shifted slightly sideways around its size so that equal values stay
    visible (the data file holds the unshifted values).

    Args:
        rows: One row per size with ``size_key`` and one value per metric; optional
            ``"<metric>:ci_low"``/``"<metric>:ci_high"`` draw error bars.
        path: The PNG file.
        metrics: Which row keys to plot.
        size_key: The row key holding the stage-1 size.
        title: The plot title.
        data_path: Where the plotted data goes (default: ``path`` with suffix ``.json``).
    """
    target = Path(path)
    data = sweep_plot_data(rows, metrics=metrics, size_key=size_key)
    with _figure(target, data, title=title, data_path=data_path, legend=bool(data["series"])) as ax:
        xs = list(range(len(data["sizes"])))
        k = len(data["series"])
        with_bars = False
        for i, s in enumerate(data["series"]):
            # Shift each series a little sideways so that equal values do not hide one another.
            shift = (i - (k - 1) / 2) * min(0.08, 0.4 / max(k, 1)) if k > 1 else 0.0
            xi = [x + shift for x in xs]
            ys = [float("nan") if v is None else v for v in s["value"]]
            lows, highs = s["ci_low"], s["ci_high"]
            if all(v is not None for v in lows + highs) and xs:
                err = [[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]]
                ax.errorbar(xi, ys, yerr=err, marker="o", capsize=3, label=s["metric"])
                with_bars = True
            else:
                ax.plot(xi, ys, marker="o", label=s["metric"])
        values = [v for s in data["series"] for v in s["value"] if v is not None]
        if values and max(values) == min(values) and 0 <= values[0] <= 1:
            ax.set_ylim(-0.02, 1.02)  # a flat line: show it on the whole score range
        ax.set_xticks(xs)
        ax.set_xticklabels([_size_label(n) for n in data["sizes"]])
        ax.set_xlabel("stage-1 pretraining pairs")
        ax.set_ylabel("score (bars: bootstrap interval)" if with_bars else "score")
    return target


def _size_label(n: int) -> str:
    """``55000`` → ``55K``; small sizes stay as they are.

    >>> _size_label(55000), _size_label(7), _size_label(0)
    ('55K', '7', '0')
    """
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}K"
    return str(n)
