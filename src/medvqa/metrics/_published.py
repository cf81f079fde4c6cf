"""The profiles that reproduce published evaluation code: ``paper``, ``llava_med``, ``lmms_eval``,
``multimedeval`` (``medevalkit`` has its own module, :mod:`medvqa.metrics._medevalkit`)."""

from __future__ import annotations

from dataclasses import dataclass

from medvqa.answers import (
    _normalize_vqav2_again,
    extract_paper_answer,
    normalize_lmms_eval,
    normalize_multimedeval,
    normalize_vqav2,
)
from medvqa.metrics._base import _EMPTY_SPEC, _YES_NO, AggregateSpec, ItemValue, Profile, _common, _specs
from medvqa.metrics._items import (
    containment,
    paper_f1,
    sentence_bleu,
    sentence_bleus,
    set_precision_recall_f1,
    torchmetrics_bleu1,
    vqa_prf,
    vqa_word_exact,
)
from medvqa.metrics._tokenize import treebank_tokenize
from medvqa.records import Prediction

__all__ = ["LlavaMedProfile", "LmmsEvalProfile", "MultiMedEvalProfile", "PaperProfile"]

_LLAVA_BLEU_WEIGHTS = ((0.25, 0.25, 0.25, 0.25), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0))


@dataclass(frozen=True)
class PaperProfile(Profile):
    """``paper``: the Med-Idefics paper's evaluation, quirks included.

    * Truth is only lowercased; pred is lowercased and passed through the paper's extractor
      (:func:`medvqa.answers.extract_paper_answer`).
    * ``containment`` (the paper's "Exact Match"): truth is a character substring of pred, so
      ``no`` matches ``not`` and ``abnormal`` (a known false positive).
    * ``f1``: Treebank tokens with punctuation kept, set intersection over list-length
      denominators: a correct ``"no."`` against ``"no"`` scores 0.667.
    * ``bleu1``: NLTK ``sentence_bleu`` with weights (1, 0, 0, 0), no smoothing (``"no."``
      against ``"no"`` scores 0.5).
    * Aggregates: plain means over all items, and over closed and open items.

    Reproduces the paper's per-item values to floating-point rounding without NLTK.
    """

    answers_only = True
    name = "paper"
    source = "Med-Idefics paper evaluation code (NLTK Treebank tokens, sentence_bleu)"
    metric_names = ("containment", "f1", "bleu1")
    agreement_metrics = ("containment", "f1", "bleu1")
    aggregates = (
        *(
            spec
            for subset in ("all", "closed", "open")
            for spec in _specs(subset, "containment", "f1", "bleu1")
        ),
        _EMPTY_SPEC,
    )

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        truth = pred.reference.lower()
        ex = extract_paper_answer(pred.prediction)
        tt = treebank_tokenize(truth)
        pt = treebank_tokenize(ex.answer)
        out = _common(pred, ex.answer, ex.rule, ex.answer, truth)
        out["closed"] = self.is_closed(pred, truth.strip())
        out["containment"] = 1.0 if containment(truth, ex.answer) else 0.0
        out["f1"] = paper_f1(tt, pt)
        out["bleu1"] = sentence_bleu(tt, pt, (1, 0, 0, 0))
        return out


@dataclass(frozen=True)
class LlavaMedProfile(Profile):
    """``llava_med``: LLaVA-Med v1.0's ``run_eval_batch.py`` (the paper-table variant).

    * No extraction. Both strings are lowercased and passed once through
      :func:`medvqa.answers.normalize_vqav2` (VQA v2 rules, with the upstream look-ahead
      typo: periods are removed whether or not a digit precedes them, at most 32).
    * ``accuracy/closed``: normalized truth is a Python substring of normalized pred, so
      ``no`` matches ``normal`` and a pred holding both ``yes`` and ``no`` is right for
      either. Averaged over CLOSED items.
    * ``recall``, ``precision``, ``f1``, ``exact``: the upstream functions normalize their
      inputs a second time (so normalization is applied twice); word counts over the union
      of word types (see :func:`~medvqa.metrics.vqa_prf`). ``exact`` is *not* exact
      match: distinct truth words found in pred divided by the number of pred tokens.
    * ``hit/open``: normalized truth ⊂ normalized pred, over OPEN items.
    * ``bleu`` (4-gram, equal weights) and ``bleu1``/``bleu2``/``bleu3`` (weights (1,0,0,0),
      (0,1,0,0), (0,0,1,0)): NLTK ``sentence_bleu`` on whitespace tokens, no smoothing.
    * Open-question metrics average over OPEN items only; ``recall/closed`` (upstream's
      ``recall_closed``) is the same recall over CLOSED items.

    The sampling decoding LLaVA-Med used (temperature 0.7) is not part of the profile.
    """

    answers_only = True
    name = "llava_med"
    source = "LLaVA-Med v1.0 llava/eval/run_eval_batch.py and eval_metrics/utils.py"
    metric_names = (
        "hit", "recall", "precision", "f1", "exact", "bleu", "bleu1", "bleu2", "bleu3",
    )  # fmt: skip
    agreement_metrics = ("hit", "recall", "f1")
    aggregates = (
        AggregateSpec("accuracy/closed", "accuracy", "hit", "closed"),
        *_specs("open", "recall", "precision", "f1", "exact", "hit", "bleu", "bleu1", "bleu2", "bleu3"),
        *_specs("closed", "recall"),
        _EMPTY_SPEC,
    )

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        t1 = normalize_vqav2(pred.reference.lower())
        p1 = normalize_vqav2(pred.prediction.lower())
        t2 = _normalize_vqav2_again(t1).split()
        p2 = _normalize_vqav2_again(p1).split()
        tw, pw = t1.split(), p1.split()
        precision, recall, f1 = vqa_prf(t2, p2)
        out = _common(pred, pred.prediction, "none", p1, t1)
        out["closed"] = self.is_closed(pred, t1)
        out["hit"] = 1.0 if t1 in p1 else 0.0
        out["recall"] = recall
        out["precision"] = precision
        out["f1"] = f1
        out["exact"] = vqa_word_exact(t2, p2)
        out["bleu"], out["bleu1"], out["bleu2"], out["bleu3"] = sentence_bleus(tw, pw, _LLAVA_BLEU_WEIGHTS)
        return out


@dataclass(frozen=True)
class LmmsEvalProfile(Profile):
    """``lmms_eval``: lmms-eval's SLAKE task.

    * No extraction; both strings pass through :func:`medvqa.answers.normalize_lmms_eval`
      (parenthesised groups removed, punctuation to spaces, ``x ray`` → ``xray``, whole-string
      yes/no synonyms in English and Chinese folded).
    * ``accuracy``: normalized pred **equals** normalized truth, the same rule for open and
      closed questions; reported overall, for closed and open items, and (by default)
      broken down by ``modality`` and ``content_type`` when the items carry them (group
      values stripped and lowercased, as upstream: ``CT`` and ``ct`` are one group).
    """

    answers_only = True
    name = "lmms_eval"
    source = "lmms-eval lmms_eval/tasks/slake (SLAKE task normalization and scoring)"
    metric_names = ("accuracy",)
    agreement_metrics = ("accuracy",)
    aggregates = (
        *_specs("all", "accuracy"),
        *_specs("closed", "accuracy"),
        *_specs("open", "accuracy"),
        _EMPTY_SPEC,
    )
    default_by = ("modality", "content_type")
    fold_group_values = True

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        t = normalize_lmms_eval(pred.reference)
        p = normalize_lmms_eval(pred.prediction)
        out = _common(pred, pred.prediction, "none", p, t)
        out["closed"] = self.is_closed(pred, t)
        out["accuracy"] = 1.0 if p == t else 0.0
        return out


@dataclass(frozen=True)
class MultiMedEvalProfile(Profile):
    """``multimedeval``: MultiMedEval's VQA family (VQA-RAD, SLAKE, PathVQA tasks).

    * Cleaning: lowercase, then :func:`medvqa.answers.normalize_vqav2`
      (:func:`medvqa.answers.normalize_multimedeval`). Tokens are the **set** of whitespace
      tokens.
    * Per item: precision ``|P∩G|/|P|``, recall ``|P∩G|/|G|``, ``F1 = 2PR/(P+R+1e-8)`` (so a
      perfect answer scores 0.99999999), BLEU-1 = clipped unigram precision × brevity
      penalty (torchmetrics ``BLEUScore(n_gram=1)``, here in float64).
    * Precision, recall, F1 and BLEU-1 always use the **original** truth set G: truth
      ``no`` against pred ``No`` scores recall 1.0; against ``Not seen.`` recall 0.0 and
      F1 0.0.
    * Closed is decided by the profile itself, ignoring annotations: the cleaned truth is
      ``yes`` or ``no``. Only for the closed-correct decision is a truth ``no`` widened to
      G' = {``no``, ``not``}: a closed item is correct when ``|P∩G'|/|G'|`` ≥ 0.4 (so
      ``not`` alone, or ``no`` alone, is right for ``no``: ``Not seen.`` is closed-correct
      with recall 0.0).
    * Not reproduced: some MultiMedEval versions also lemmatize tokens with NLTK's WordNet
      lemmatizer (which needs downloaded data) and split on single spaces; this profile
      follows the cleaning above.
    * Aggregates: ``bleu``, ``F1``, ``recall`` are means over **all** items;
      ``closedQuestionsAccuracy`` over closed items; ``openQuestionsRecall`` (mean recall)
      and ``openQuestionsAccuracy`` (share with recall ≥ 0.75) over open items. The per-item
      ``correct`` (closed rule for closed items, recall ≥ 0.75 for open ones) serves the
      agreement with human judgements.
    """

    answers_only = True
    name = "multimedeval"
    source = "MultiMedEval multimedeval/vqa.py (VQA family scoring)"
    metric_names = (
        "bleu1", "precision", "recall", "f1", "closed_correct", "open_correct", "correct",
    )  # fmt: skip
    agreement_metrics = ("correct", "f1", "recall", "bleu1")
    aggregates = (
        AggregateSpec("bleu", "bleu", "bleu1", "all"),
        AggregateSpec("F1", "F1", "f1", "all"),
        AggregateSpec("recall", "recall", "recall", "all"),
        AggregateSpec("closedQuestionsAccuracy", "closedQuestionsAccuracy", "closed_correct", "closed"),
        AggregateSpec("openQuestionsRecall", "openQuestionsRecall", "recall", "open"),
        AggregateSpec("openQuestionsAccuracy", "openQuestionsAccuracy", "open_correct", "open"),
        _EMPTY_SPEC,
    )

    def is_closed(self, pred: Prediction, truth_norm: str) -> bool:
        """MultiMedEval decides by itself: the cleaned truth is ``yes`` or ``no``."""
        return truth_norm in _YES_NO

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        t = normalize_multimedeval(pred.reference)
        p = normalize_multimedeval(pred.prediction)
        tw, pw = t.split(), p.split()
        gset, pset = set(tw), set(pw)
        precision, recall, f1 = set_precision_recall_f1(gset, pset)
        closed = self.is_closed(pred, t)
        closed_recall = recall
        if closed and gset == {"no"}:
            # Only the closed-correct decision widens a "no" truth to {no, not}.
            closed_recall = set_precision_recall_f1({"no", "not"}, pset)[1]
        out = _common(pred, pred.prediction, "none", p, t)
        out["closed"] = closed
        out["bleu1"] = torchmetrics_bleu1(tw, pw)
        out["precision"] = precision
        out["recall"] = recall
        out["f1"] = f1
        out["closed_correct"] = 1.0 if closed and closed_recall >= 0.4 else 0.0
        out["open_correct"] = 1.0 if recall >= 0.75 else 0.0
        out["correct"] = out["closed_correct"] if closed else out["open_correct"]
        return out
