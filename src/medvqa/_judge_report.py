"""The audit of a judged run: the judge next to every rule profile and an expert (:func:`judge_report`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medvqa.metrics._aggregate import Aggregate, wilson_interval
from medvqa.metrics._profiles import PROFILES
from medvqa.records import Prediction

if TYPE_CHECKING:  # pragma: no cover
    from medvqa.judge import JudgeVerdict


@dataclass(frozen=True)
class JudgeAgreement:
    """Agreement between the judge and one other rater on the same items.

    Attributes:
        rater: ``profile:metric`` or ``expert``.
        n: Items compared.
        agree: Items where both say the same.
        judge_only: Items only the judge calls correct.
        rater_only: Items only the other rater calls correct.
        kappa: Cohen's kappa (``nan`` when undefined).
    """

    rater: str
    n: int
    agree: int
    judge_only: int
    rater_only: int
    kappa: float

    @property
    def disagree(self) -> int:
        """Items where they differ."""
        return self.judge_only + self.rater_only

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``nan`` written as ``None``)."""
        return {
            "rater": self.rater,
            "n": self.n,
            "agree": self.agree,
            "disagree": self.disagree,
            "judge_only": self.judge_only,
            "rater_only": self.rater_only,
            "kappa": None if math.isnan(self.kappa) else self.kappa,
        }


@dataclass(frozen=True)
class JudgeReport:
    """The audit of one judged run (see :func:`judge_report`).

    Attributes:
        judge: Model id, revision and prompt version.
        judged_accuracy: Judged accuracy over the open items with a parseable verdict
            (Wilson 95% interval).
        rule_accuracy: Each rule profile's accuracy on exactly those items, by ``profile:metric``.
        agreements: Judge vs each rule (and ``expert`` when a review sheet was given).
        disagreements: The items most rules disagree with the judge on, most first.
        unparseable: Every unparseable verdict (``id``, ``answer``, ``reply``).
        n_open: Open items judged (parseable or not).
    """

    judge: dict[str, Any]
    judged_accuracy: Aggregate
    rule_accuracy: dict[str, Aggregate]
    agreements: dict[str, JudgeAgreement]
    disagreements: list[dict[str, Any]]
    unparseable: list[dict[str, Any]]
    n_open: int
    expert_accuracy: Aggregate | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "judge": dict(self.judge),
            "n_open": self.n_open,
            "judged_accuracy": self.judged_accuracy.to_dict(),
            "rule_accuracy": {k: a.to_dict() for k, a in self.rule_accuracy.items()},
            "agreements": {k: a.to_dict() for k, a in self.agreements.items()},
            "disagreements": list(self.disagreements),
            "unparseable": list(self.unparseable),
            "expert_accuracy": self.expert_accuracy.to_dict() if self.expert_accuracy else None,
        }

    def to_markdown(self, digits: int = 3) -> str:
        """A readable Markdown report."""
        from medvqa._tables import markdown_table

        j = self.judge
        lines = [
            f"## Judged scoring: {j.get('model')} (revision {j.get('revision') or 'unpinned'}, "
            f"prompt {j.get('prompt_version')})",
            "",
            f"{self.n_open} open items judged; {len(self.unparseable)} unparseable verdicts "
            f"(left out of every number below, listed at the end).",
            "",
            markdown_table(
                ["rater", "accuracy on the same items", "agree", "disagree", "Cohen's kappa"],
                self._rater_rows(digits),
            ),
        ]
        if self.disagreements:
            rows = [
                [
                    d["id"],
                    d["reference"],
                    d["answer"],
                    "correct" if d["verdict"] else "wrong",
                    ", ".join(d["rules"]),
                ]
                for d in self.disagreements
            ]
            lines += ["", "Items where the rules disagree with the judge most often:", ""]
            lines.append(
                markdown_table(["id", "reference", "answer", "judge", "rules disagreeing"], rows, limit=60)
            )
        if self.unparseable:
            rows = [[u["id"], u["answer"], u["reply"]] for u in self.unparseable]
            lines += ["", "Unparseable verdicts:", ""]
            lines.append(markdown_table(["id", "answer", "judge reply"], rows, limit=60))
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _rater_rows(self, digits: int) -> list[list[object]]:
        from medvqa._tables import number

        rows: list[list[object]] = [["judge", self.judged_accuracy.format(digits, n=True), None, None, None]]
        raters = [(key, acc, self.agreements[key]) for key, acc in self.rule_accuracy.items()]
        if "expert" in self.agreements and self.expert_accuracy is not None:
            raters.append(("expert", self.expert_accuracy, self.agreements["expert"]))
        for key, acc, a in raters:
            rows.append([key, acc.format(digits, n=True), a.agree, a.disagree, number(a.kappa, digits)])
        return rows


def _proportion(name: str, values: Sequence[bool], level: float) -> Aggregate:
    k, n = sum(values), len(values)
    lo, hi = wilson_interval(k, n, level) if n else (None, None)
    return Aggregate(name, "open", k / n if n else None, float(k), n, lo, hi, item_metric=name, key=name)


def _agreement(rater: str, judge: Sequence[bool], other: Sequence[bool]) -> JudgeAgreement:
    from medvqa.review import cohen_kappa

    return JudgeAgreement(
        rater=rater,
        n=len(judge),
        agree=sum(a == b for a, b in zip(judge, other)),
        judge_only=sum(a and not b for a, b in zip(judge, other)),
        rater_only=sum(b and not a for a, b in zip(judge, other)),
        kappa=cohen_kappa(judge, other),
    )


# Over 60 lines with its public docstring; the code is 39 lines.
def judge_report(
    predictions: Sequence[Prediction],
    verdicts: Sequence[JudgeVerdict],
    *,
    profiles: Sequence[str] = tuple(PROFILES),
    review_sheet: str | os.PathLike[str] | None = None,
    max_disagreements: int = 10,
    threshold: float = 0.5,
    level: float = 0.95,
) -> JudgeReport:
    """Audit the judge against every rule profile (and an expert) on the same open items.

    Each rule profile's verdict on an item is its first agreement metric (``paper``:
    containment, ``llava_med``: hit, ``medevalkit``: exact match, ...), counted correct at or
    above ``threshold``. Items with an unparseable verdict are left out of every comparison
    and listed.

    Args:
        predictions: The predictions that were judged.
        verdicts: :func:`judge_predictions` output.
        profiles: Rule profiles to compare with.
        review_sheet: A filled ``medvqa review`` sheet (expert marks; empty marks ignored).
        max_disagreements: How many most-disputed items to list.
        threshold: A continuous rule metric counts as correct at or above this.
        level: Confidence level of the intervals.
    """
    from medvqa.judge import JUDGE_PROMPT_VERSION

    by_id = {p.id: p for p in predictions}
    parsed = [v for v in verdicts if v.verdict is not None]
    judge_says = [bool(v.verdict) for v in parsed]
    rule_accuracy, agreements, disputed = _rule_agreement(
        [by_id[v.id] for v in parsed], parsed, profiles, threshold=threshold, level=level
    )
    ranked = sorted((v for v in parsed if disputed[v.id]), key=lambda v: -len(disputed[v.id]))
    disagreements = [
        {
            "id": v.id,
            "reference": v.reference,
            "answer": v.answer,
            "verdict": v.verdict,
            "rules": disputed[v.id],
        }
        for v in ranked[:max_disagreements]
    ]
    expert_accuracy = None
    if review_sheet is not None:
        agreements["expert"], expert_accuracy = _expert_agreement(parsed, review_sheet, level)
    first = verdicts[0] if verdicts else None
    return JudgeReport(
        judge={
            "model": first.judge_model if first else "",
            "revision": first.judge_revision if first else "",
            "prompt_version": JUDGE_PROMPT_VERSION,
        },
        judged_accuracy=_proportion("judge", judge_says, level),
        rule_accuracy=rule_accuracy,
        agreements=agreements,
        disagreements=disagreements,
        unparseable=[
            {"id": v.id, "answer": v.answer, "reply": v.reply} for v in verdicts if v.verdict is None
        ],
        n_open=len(verdicts),
        expert_accuracy=expert_accuracy,
    )


def _rule_agreement(
    subset: Sequence[Prediction],
    parsed: Sequence[JudgeVerdict],
    profiles: Sequence[str],
    *,
    threshold: float,
    level: float,
) -> tuple[dict[str, Aggregate], dict[str, JudgeAgreement], dict[str, list[str]]]:
    """Each rule profile on the judged items: its accuracy, its agreement with the judge, and,
    per item, the profiles that disagree with the judge."""
    from medvqa.metrics import evaluate, get_profile

    judge_says = [bool(v.verdict) for v in parsed]
    rule_accuracy: dict[str, Aggregate] = {}
    agreements: dict[str, JudgeAgreement] = {}
    disputed: dict[str, list[str]] = {v.id: [] for v in parsed}
    for name in profiles:
        prof = get_profile(name)
        result = evaluate(subset, profile=prof, n_boot=0) if subset else None
        metric = (prof.agreement_metrics or prof.metric_names)[0]
        key = f"{name}:{metric}"
        says = [float(row[metric]) >= threshold for row in result.per_item] if result else []
        rule_accuracy[key] = _proportion(key, says, level)
        agreements[key] = _agreement(key, judge_says, says)
        for v, s in zip(parsed, says):
            if s != v.verdict:
                disputed[v.id].append(name)
    return rule_accuracy, agreements, disputed


def _expert_agreement(
    parsed: Sequence[JudgeVerdict], review_sheet: str | os.PathLike[str], level: float
) -> tuple[JudgeAgreement, Aggregate]:
    """The judge against the expert marks of a filled review sheet (empty marks ignored)."""
    from medvqa.review import read_review_sheet

    marks = {r.id: r.correct for r in read_review_sheet(review_sheet, require_complete=False)}
    pairs = [(bool(v.verdict), marks[v.id]) for v in parsed if marks.get(v.id) is not None]
    agreement = _agreement("expert", [a for a, _ in pairs], [bool(b) for _, b in pairs])
    return agreement, _proportion("expert", [bool(b) for _, b in pairs], level)
