"""The ablation report: reliance and abstention results of one model, as Markdown and JSON.

:func:`ablation_report` scores every ablated run against the normal run
(:func:`~medvqa.ablations.visual_reliance`) and every nonsense-question run
(:func:`~medvqa.ablations.abstention`), and returns an :class:`AblationReport`. Light core.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._io import atomic_write_json, atomic_write_text
from medvqa._tables import Align, cell, interval, markdown_table, number
from medvqa.ablations.abstention import (
    DEFAULT_ABSTENTION_RULES,
    AbstentionResult,
    AbstentionRules,
    abstention,
)
from medvqa.ablations.reliance import SUBSETS, RelianceResult, visual_reliance
from medvqa.records import Prediction

__all__ = ["AblationReport", "ablation_report"]

_LIMIT = 160
"""Longest cell text in the report's tables."""

_RELIANCE_COLUMNS: tuple[tuple[str, Align], ...] = (
    ("ablation", "left"),
    ("metric", "left"),
    ("n", "right"),
    ("normal", "right"),
    ("ablated", "right"),
    ("drop [CI]", "left"),
    ("McNemar p", "right"),
)
_ABSTENTION_COLUMNS: tuple[tuple[str, Align], ...] = (
    ("run", "left"),
    ("n", "right"),
    ("abstained", "right"),
    ("rate [CI]", "left"),
    ("confident", "right"),
    ("empty", "right"),
    ("rules that fired", "left"),
)


def _table(columns: Sequence[tuple[str, Align]], rows: Sequence[Sequence[object]]) -> str:
    return markdown_table([c for c, _ in columns], rows, align=[a for _, a in columns], limit=_LIMIT)


@dataclass(frozen=True)
class AblationReport:
    """Reliance and abstention results of one model, ready to print or save.

    Attributes:
        title: Heading of the Markdown report.
        profile: Scoring profile of the reliance results.
        n_baseline: Items in the normal run.
        reliance: One :class:`RelianceResult` per ablation.
        abstention: One :class:`AbstentionResult` per nonsense-question run.
        config: Free-form settings to record (model, dataset, seed, transforms, ...).
    """

    title: str
    profile: str
    n_baseline: int
    reliance: tuple[RelianceResult, ...] = ()
    abstention: tuple[AbstentionResult, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of everything in the report."""
        return {
            "title": self.title,
            "profile": self.profile,
            "n_baseline": self.n_baseline,
            "config": dict(self.config),
            "reliance": [r.to_dict() for r in self.reliance],
            "abstention": [a.to_dict() for a in self.abstention],
        }

    def to_markdown(self, *, digits: int = 3) -> str:
        """The report as Markdown: tables of paired differences, changed answers and abstention.

        Tables follow :mod:`medvqa._tables` (a missing value is an em dash).
        """
        lines = [f"# {self.title}", ""]
        if self.config:
            lines += [markdown_table(["setting", "value"], list(self.config.items()), limit=_LIMIT), ""]
        if self.reliance:
            lines += _reliance_section(self, digits)
        if self.abstention:
            lines += _abstention_section(self.abstention, digits)
        return "\n".join(lines).rstrip() + "\n"

    def write(self, folder: str | os.PathLike[str], *, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.json`` into ``folder`` (atomically); return both paths."""
        out = Path(folder)
        md, js = out / f"{stem}.md", out / f"{stem}.json"
        atomic_write_text(md, self.to_markdown())
        atomic_write_json(js, self.to_dict())
        return md, js


def _reliance_section(report: AblationReport, digits: int) -> list[str]:
    first = report.reliance[0]
    rows = []
    for r in report.reliance:
        for d in r.differences:
            mark = " \\*" if d.significant else ""
            rows.append(
                [
                    r.name,
                    d.metric,
                    d.n,
                    number(d.normal, digits),
                    number(d.ablated, digits),
                    number(d.drop, digits) + interval(d.ci_low, d.ci_high, digits) + mark,
                    None if d.p_mcnemar is None else f"{d.p_mcnemar:.3g}",
                ]
            )
    changed = []
    for r in report.reliance:
        cells: list[object] = [r.name, f"`{r.transform}`"]
        for subset in SUBSETS:
            c, n = r.changed.get(subset, (0, 0))
            cells.append(f"{c}/{n} ({c / n:.1%})" if n else "0/0")
        changed.append(cells)
    return [
        "## Paired differences against the normal run",
        "",
        f"Profile `{report.profile}`; {report.n_baseline} items in the normal run. "
        f"*drop* = normal - ablated, mean over the items scored in both runs, with a "
        f"{first.level:.0%} paired percentile bootstrap interval ({first.n_boot} replicates, "
        f"seed {first.seed}). An interval that excludes 0 (marked \\*) is evidence that the "
        "ablated input matters for that metric; one that contains 0 is not.",
        "",
        _table(_RELIANCE_COLUMNS, rows),
        "",
        "### Answers that changed",
        "",
        "Share of items whose normalized extracted answer differs from the normal run's.",
        "",
        markdown_table(["ablation", "transform", "all", "closed", "open"], changed, limit=_LIMIT),
        "",
    ]


def _abstention_section(results: Sequence[AbstentionResult], digits: int) -> list[str]:
    rows = [
        [
            a.name,
            a.n,
            a.abstained,
            number(a.rate, digits) + interval(a.ci_low, a.ci_high, digits),
            a.confident,
            a.empty,
            ", ".join(f"{k}: {v}" for k, v in a.by_rule.items()),
        ]
        for a in results
    ]
    lines = [
        "## Abstention on nonsense questions",
        "",
        "A good answer to a nonsense question declines, says it does not know, or picks the "
        f"abstaining option. Rate = abstained / n, with a {results[0].level:.0%} Wilson score "
        "interval. Empty answers count in n but neither as abstaining nor as confident. "
        "Detection follows the documented rules of `medvqa.ablations.AbstentionRules`; check "
        "the examples below before trusting the rate.",
        "",
        _table(_ABSTENTION_COLUMNS, rows),
    ]
    for a in results:
        if not a.examples:
            continue
        examples = [
            ["abstained" if e["abstained"] else "confident", e["rule"], e["question"], e["prediction"]]
            for e in a.examples
        ]
        lines += [
            "",
            f"### Examples: {cell(a.name, limit=_LIMIT)}",
            "",
            markdown_table(["outcome", "rule", "question", "answer"], examples, limit=120),
        ]
    lines.append("")
    return lines


def ablation_report(
    normal: Sequence[Prediction],
    runs: Mapping[str, Sequence[Prediction]],
    *,
    nonsense: Mapping[str, Sequence[Prediction]] | None = None,
    profile: str = "strict",
    metrics: Sequence[str] | None = None,
    rules: AbstentionRules = DEFAULT_ABSTENTION_RULES,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    title: str = "Ablation report",
    config: Mapping[str, Any] | None = None,
) -> AblationReport:
    """Score every ablation run against the normal run, and every nonsense run for abstention.

    Args:
        normal: The normal (untransformed) run.
        runs: Ablated runs by name; each must hold the normal run's ids.
        nonsense: Nonsense-question runs by name (scored with :func:`abstention`).
        profile: Scoring profile of the paired differences.
        metrics: Per-item metrics to compare (default: all of the profile's).
        rules: Abstention rules.
        seed: Seed of every bootstrap.
        n_boot: Bootstrap replicates.
        level: Confidence level.
        title: Report heading.
        config: Settings to record in the report.
    """
    reliance = tuple(
        visual_reliance(
            normal, preds, name=name, profile=profile, metrics=metrics, seed=seed, n_boot=n_boot, level=level
        )
        for name, preds in runs.items()
    )
    abst = tuple(
        abstention(preds, name=name, rules=rules, seed=seed, level=level)
        for name, preds in (nonsense or {}).items()
    )
    return AblationReport(
        title=title,
        profile=profile,
        n_baseline=len(normal),
        reliance=reliance,
        abstention=abst,
        config=dict(config or {}),
    )
