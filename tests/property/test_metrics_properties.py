"""Properties of the metrics and profiles (each test states its property)."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medvqa.answers import normalize_strict
from medvqa.metrics import (
    PROFILES,
    evaluate,
    paper_f1,
    sentence_bleu,
    set_precision_recall_f1,
    squad_f1,
    token_recall,
    torchmetrics_bleu1,
    treebank_tokenize,
    vqa_prf,
    vqa_word_exact,
)
from medvqa.metrics._items import _squad_f1_and_recall, sentence_bleus
from medvqa.records import Prediction
from tests.strategies import answer_text, prediction_lists, treebank_text

SETTINGS = settings(max_examples=60, deadline=None)
tokens = st.lists(st.sampled_from(["yes", "no", "left", "lung", ".", "the", "a"]), max_size=7)


@settings(max_examples=200, deadline=None)
@given(tokens, tokens)
def test_per_item_scores_lie_in_unit_interval(t: list[str], p: list[str]) -> None:
    """Every per-item metric lies in [0, 1]."""
    values = [
        paper_f1(t, p) if t and p else 0.0,
        sentence_bleu(t, p, (1, 0, 0, 0)),
        sentence_bleu(t, p),
        *vqa_prf(t, p),
        vqa_word_exact(t, p),
        *set_precision_recall_f1(set(t), set(p)),
        torchmetrics_bleu1(t, p),
        squad_f1(t, p),
        token_recall(t, p),
    ]
    assert all(0.0 <= v <= 1.0 for v in values), values


@settings(max_examples=200, deadline=None)
@given(tokens, tokens)
def test_symmetric_metrics_are_symmetric(t: list[str], p: list[str]) -> None:
    """Token F1 (SQuAD multiset, MultiMedEval set) does not depend on argument order.

    (LLaVA-Med's word F1 counts tp with pred's multiplicities, so it is not symmetric; the
    paper's F1 divides a set intersection by list lengths, symmetric in form.)
    """
    assert squad_f1(t, p) == squad_f1(p, t)
    assert math.isclose(
        set_precision_recall_f1(set(t), set(p))[2], set_precision_recall_f1(set(p), set(t))[2]
    )
    if t and p:
        assert math.isclose(paper_f1(t, p), paper_f1(p, t))
    if len(set(t)) == len(t) and len(set(p)) == len(p):
        assert math.isclose(vqa_prf(t, p)[2], vqa_prf(p, t)[2])


@settings(max_examples=300, deadline=None)
@given(tokens, tokens)
def test_shared_token_counts_give_the_same_f1_and_recall(t: list[str], p: list[str]) -> None:
    """The strict profile's one-count F1 and recall equal squad_f1 and token_recall exactly."""
    assert _squad_f1_and_recall(t, p) == (squad_f1(t, p), token_recall(t, p))


@settings(max_examples=300, deadline=None)
@given(tokens, tokens)
def test_sentence_bleus_equals_one_sentence_bleu_per_weight_set(t: list[str], p: list[str]) -> None:
    """BLEU under several weight sets at once is, float for float, BLEU under each one."""
    weight_sets = [(0.25, 0.25, 0.25, 0.25), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0.5, 0.5)]
    assert sentence_bleus(t, p, weight_sets) == tuple(sentence_bleu(t, p, w) for w in weight_sets)


@settings(max_examples=200, deadline=None)
@given(answer_text.filter(lambda s: s.strip() != ""))
def test_identity_scores_are_perfect_where_the_rule_says_so(text: str) -> None:
    """An answer scored against itself is perfect under each profile's equality-like rule."""

    def row(prof):
        return evaluate([Prediction("x", "q", text, text, "open")], profile=prof, n_boot=0).per_item[0]

    lowered = text.lower().strip()
    paper = row("paper")
    if lowered == text.lower():  # the paper compares the stripped pred with the unstripped truth
        assert paper["containment"] == 1.0
    toks = treebank_tokenize(lowered)
    if toks:
        assert paper["bleu1"] == 1.0
        if len(set(toks)) == len(toks):  # repeated tokens cost F1 (set over list length)
            assert paper["f1"] == 1.0
    assert row("lmms_eval")["accuracy"] == 1.0
    assert row("llava_med")["hit"] == 1.0
    strict = row("strict")
    if extract_ok(text):
        assert strict["exact_match"] == 1.0 and strict["f1"] == 1.0 and strict["fuzzy_match"] == 1.0


def extract_ok(text: str) -> bool:
    from medvqa.answers import extract_strict_answer

    return normalize_strict(extract_strict_answer(text).answer) == normalize_strict(text)


@SETTINGS
@given(prediction_lists(), st.sampled_from(sorted(PROFILES)))
def test_corpus_score_is_the_mean_of_items(preds: list[Prediction], profile: str) -> None:
    """Every aggregate equals the mean of its per-item values over its subset, n = subset size."""
    r = evaluate(preds, profile=profile, n_boot=0, by=())
    for agg in r.aggregates.values():
        if agg.subset == "all":
            members = r.per_item
        elif agg.subset == "closed":
            members = [row for row in r.per_item if row["closed"]]
        else:
            members = [row for row in r.per_item if not row["closed"]]
        assert agg.denominator == len(members)
        values = [float(row[agg.item_metric]) for row in members]
        if values:
            assert agg.value is not None and math.isclose(agg.value, sum(values) / len(values), abs_tol=1e-12)
            assert 0.0 <= agg.value <= 1.0
        else:
            assert agg.value is None


@SETTINGS
@given(prediction_lists(min_size=2), st.randoms(use_true_random=False), st.sampled_from(sorted(PROFILES)))
def test_permuting_aligned_pairs_changes_nothing(preds: list[Prediction], rnd, profile: str) -> None:  # type: ignore[no-untyped-def]
    """Shuffling the items (pairs kept together) leaves every aggregate and interval unchanged."""
    shuffled = list(preds)
    rnd.shuffle(shuffled)
    a = evaluate(preds, profile=profile, n_boot=50, seed=5)
    b = evaluate(shuffled, profile=profile, n_boot=50, seed=5)
    assert a.aggregates.keys() == b.aggregates.keys()
    for key in a.aggregates:
        x, y = a.aggregates[key], b.aggregates[key]
        assert x.denominator == y.denominator
        assert (x.value is None and y.value is None) or math.isclose(x.value, y.value, abs_tol=1e-12)  # type: ignore[arg-type]
        assert (x.ci_low, x.ci_high) == (y.ci_low, y.ci_high)


@SETTINGS
@given(prediction_lists(), st.sampled_from(["paper", "lmms_eval", "strict"]))
def test_closed_and_open_recombine_to_overall(preds: list[Prediction], profile: str) -> None:
    """n_closed * closed + n_open * open == n * overall, for metrics reported on all three."""
    r = evaluate(preds, profile=profile, n_boot=0, by=())
    for key, agg in r.aggregates.items():
        if agg.subset != "all" or f"{key}/closed" not in r.aggregates:
            continue
        closed, opened = r.aggregates[f"{key}/closed"], r.aggregates[f"{key}/open"]
        assert closed.denominator + opened.denominator == agg.denominator
        assert math.isclose(closed.numerator + opened.numerator, agg.numerator, abs_tol=1e-9)


@SETTINGS
@given(prediction_lists(max_size=30), st.sampled_from(sorted(PROFILES)))
def test_every_numerator_is_the_exact_sum_of_its_items(preds: list[Prediction], profile: str) -> None:
    """Each aggregate's numerator is math.fsum of its per-item values, float for float."""
    r = evaluate(preds, profile=profile, n_boot=0, by=("modality",))
    for agg in r.aggregates.values():
        subset = agg.subset.split("&")
        rows = [
            row
            for row, p in zip(r.per_item, preds)
            if all(
                part == "all"
                or (part == "closed" and row["closed"])
                or (part == "open" and not row["closed"])
                # lmms_eval folds group values to lowercase (its "ct" is "CT")
                or part.lower() == f"modality={p.metadata.get('modality', '(missing)')}".lower()
                for part in subset
            )
        ]
        assert agg.denominator == len(rows)
        total = math.fsum(float(row[agg.item_metric]) for row in rows)
        assert repr(agg.numerator) == repr(total)


@SETTINGS
@given(prediction_lists(), st.integers(0, 3))
def test_bootstrap_interval_brackets_are_ordered(preds: list[Prediction], seed: int) -> None:
    """Bootstrap intervals are ordered, inside [0, 1], and reproducible for a seed."""
    r = evaluate(preds, n_boot=40, seed=seed)
    again = evaluate(preds, n_boot=40, seed=seed)
    for key, agg in r.aggregates.items():
        if agg.ci_low is not None and agg.ci_high is not None:
            assert 0.0 <= agg.ci_low <= agg.ci_high <= 1.0
            assert again.aggregates[key] == agg


@settings(max_examples=150, deadline=None)
@given(treebank_text)
def test_treebank_tokenizer_never_raises_and_drops_no_letters(text: str) -> None:
    """Tokenizing never raises and keeps every letter and digit of the input."""
    toks = treebank_tokenize(text)
    kept = "".join(toks)
    assert sorted(c for c in kept if c.isalnum()) == sorted(c for c in text if c.isalnum())


# --- shortcuts taken for speed give the same results as the general rules ---------------------

_bleu_weights = st.lists(
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=4), min_size=1, max_size=4
)


@SETTINGS
@given(tokens, tokens, _bleu_weights)
def test_sentence_bleus_equals_sentence_bleu_per_weight_set(ref: list, hyp: list, weight_sets: list) -> None:
    from medvqa.metrics._items import sentence_bleus

    assert sentence_bleus(ref, hyp, weight_sets) == tuple(sentence_bleu(ref, hyp, w) for w in weight_sets)


_plain_words = st.sampled_from(
    [
        *("no", "Left", "lung", "3", "cannot", "gonna", "wanna", "x1", "gotta", "a"),
        *("no,", ",", "1,000", "a,1", "x,,y", ",y", "Gonna,", "wanna,1", "cannot,x", ",,"),
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_plain_words, max_size=6),
    st.sampled_from(["", ".", ". ", "  ", "..", " .", ",", ",.", ", ."]),
    st.sampled_from(["", " ", "  ", ", ", ","]),
)
def test_treebank_plain_shortcut_matches_the_full_rules(words: list, end: str, sep: str) -> None:
    from medvqa.metrics._tokenize import _treebank_rules, treebank_tokenize

    text = (sep or " ").join(words) + end
    treebank_tokenize.cache_clear()
    assert treebank_tokenize(text) == _treebank_rules(text)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=40) | st.text("1.,2 aB'x-", max_size=12))
def test_strict_ascii_shortcut_matches_the_general_rule(text: str) -> None:
    from medvqa.answers import _strict_chars, _strict_chars_general

    assert _strict_chars(text) == _strict_chars_general(text)


@SETTINGS
@given(prediction_lists())
def test_repeated_answer_pairs_scored_once_give_each_items_own_values(preds: list) -> None:
    # evaluate scores a repeated (reference, prediction, type) once; every item must still
    # carry exactly the values its own scoring gives, with its own id.
    doubled = preds + [dataclasses.replace(p, id=p.id + "-again") for p in preds]
    for name, prof in PROFILES.items():
        got = evaluate(doubled, profile=name, n_boot=0).per_item
        assert got == [prof.score_item(p) for p in doubled], name


@settings(max_examples=200, deadline=None)
@given(st.text("ab 1,.;-/()'?x", max_size=16) | st.text(max_size=16))
def test_vqav2_skips_the_punctuation_pass_only_when_it_changes_nothing(text: str) -> None:
    from medvqa.answers import _vqav2_tables, normalize_vqav2

    punct = _vqav2_tables()[0]
    comma_number = re.search(r"(\d)(\,)(\d)", text) is not None
    out = text
    for p in punct:  # the upstream loop, always run
        out = out.replace(p, "" if (p + " " in text or " " + p in text) or comma_number else " ")
    normalize_vqav2.cache_clear()
    assert normalize_vqav2(text) == _normalize_after_punct(out)


def _normalize_after_punct(out: str) -> str:
    from medvqa.answers import _PERIOD_STRIP, _vqav2_tables

    _, numbers, articles, contractions = _vqav2_tables()
    out = _PERIOD_STRIP.sub("", out, 32)
    words = [numbers.get(w, w) for w in out.lower().split()]
    words = [contractions.get(w, w) for w in words if w not in articles]
    return " ".join(words).replace(",", "")


def _all_treebank_rules(text: str) -> tuple[str, ...]:
    """Every Treebank rule applied in NLTK's order, none skipped (the reference for the gates)."""
    from medvqa.metrics import _tokenize as tb

    for regexp, substitution in [
        *tb._STARTING_QUOTES,
        *tb._PUNCTUATION,
        tb._PARENS_BRACKETS,
        tb._DOUBLE_DASHES,
    ]:
        text = regexp.sub(substitution, text)
    text = " " + text + " "
    for regexp, substitution in tb._ENDING_QUOTES:
        text = regexp.sub(substitution, text)
    for regexp in [*tb._CONTRACTIONS2, *tb._CONTRACTIONS3]:
        text = regexp.sub(r" \1 \2 ", text)
    return tuple(text.split())


_gate_text = treebank_text | st.lists(
    st.sampled_from([*"CannotGIMMEİıſK'\"`.,: ?!*-()«»", "d'ye", "more'n", "'tis", "'twas", "wanna ", "N'T"]),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(_gate_text)
def test_treebank_skips_only_rules_that_cannot_match(text: str) -> None:
    from medvqa.metrics._tokenize import _treebank_rules

    assert _treebank_rules(text) == _all_treebank_rules(text)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=40) | st.text("1.,2 aB'x-thenoTWOyes", max_size=16))
def test_strict_normalization_of_ascii_text_is_a_fixed_point_after_one_pass(text: str) -> None:
    from medvqa.answers import _strict_once

    once = _strict_once(text)
    assert _strict_once(once) == once
    assert normalize_strict(text) == once


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"ab .?!\n:{}<>", "answer:", "\\boxed{", "</answer>", "<answer>", "user:"]),
        max_size=10,
    ).map("".join)
)
def test_strict_extraction_stops_when_no_rule_fired(text: str) -> None:
    from medvqa.answers import _strict_pass, extract_strict_answer

    answer, rule = _strict_pass(text)
    if rule in ("verbatim", "empty"):
        assert _strict_pass(answer) == (answer, rule)
    assert (
        extract_strict_answer(extract_strict_answer(text).answer).answer == extract_strict_answer(text).answer
    )


def _strict_pass_every_pattern(text: str) -> tuple[str, str]:
    """The strict extraction step with every pattern searched (no literal-character shortcuts)."""
    from medvqa.answers import (
        _ASSISTANT_RE,
        _CUE_RE,
        _ROLE_RE,
        _SENTENCE_END_RE,
        _STOP_RE,
        _TAG_RE,
        _boxed_content,
    )

    prefix = ""
    stripped = text.strip()
    if not stripped:
        return "", "empty"
    role = _ROLE_RE.match(stripped)
    if role is not None:
        label = role.group(0).strip().rstrip(":").strip().lower()
        stripped = stripped[role.end() :]
        prefix = "role_prefix+"
        if label in ("human", "user", "system"):
            reply = _ASSISTANT_RE.search(stripped)
            if reply is not None:
                stripped = stripped[reply.end() :].strip()
    tag = _TAG_RE.search(stripped)
    if tag is not None:
        return tag.group(1).strip(), prefix + "answer_tag"
    boxed = _boxed_content(stripped)
    if boxed is not None:
        return boxed.strip(), prefix + "boxed"
    cue = _CUE_RE.search(stripped)
    if cue is not None:
        rest = stripped[cue.end() :]
        stop = _STOP_RE.search(rest)
        if stop is not None:
            rest = rest[: stop.start()]
        rest = rest.strip()
        end = _SENTENCE_END_RE.search(rest + " ")
        if end is not None:
            rest = rest[: end.start()]
        return rest.strip(), prefix + "answer_cue"
    stop = _STOP_RE.search(stripped)
    if stop is not None and stop.start() > 0:
        first = stripped[: stop.start()].strip()
        if first:
            return first, prefix + "first_line"
    end = _SENTENCE_END_RE.search(stripped)
    if end is not None and stripped[end.end() :].strip():
        return stripped[: end.start() + 1].strip(), prefix + "first_sentence"
    return stripped, prefix + "verbatim"


_extraction_pieces = st.sampled_from(
    [
        *(
            "answer",
            "ANSWER",
            "Answer:",
            "anſwer",
            "<answer>",
            "</answer>",
            "<",
            "\\boxed{",
            "\\boxed",
            "{",
            "}",
        ),
        *("\n", ":", "user:", "Assistant:", "question:", "the", "final", "is", ".", "?", " ", "yes", "liver"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_extraction_pieces, max_size=10).map("".join) | st.text(max_size=30))
def test_strict_extraction_shortcuts_match_every_pattern(text: str) -> None:
    from medvqa.answers import _strict_pass

    assert _strict_pass(text) == _strict_pass_every_pattern(text)


_vqa_pieces = st.sampled_from(
    [
        *(
            "i'm",
            "Im",
            "lets",
            "let's",
            "dont",
            "none",
            "two",
            "the",
            "a",
            "an",
            "x-ray",
            "3.5",
            "1,000",
            ".",
        ),
        *(" ", "  ", ",", "'", "?", "(", ")", "ı", "İ", "ß", "Ǆ", "no", "liver"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_vqa_pieces, max_size=10).map("".join) | st.text(max_size=30))
def test_second_vqav2_normalization_shortcut_matches_the_rules(text: str) -> None:
    from medvqa.answers import _normalize_vqav2_again, normalize_vqav2

    rules = normalize_vqav2.__wrapped__
    once = rules(text)
    assert _normalize_vqav2_again(once) == rules(once)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=6),
    st.lists(st.integers(0, 5), min_size=1, max_size=200),
)
def test_exact_sum_is_math_fsum(pool: list[float], picks: list[int]) -> None:
    import math

    from medvqa.metrics._aggregate import exact_sum

    values = [pool[i % len(pool)] for i in picks]
    try:
        want = math.fsum(values)
    except OverflowError:  # beyond the float range: the same error
        with pytest.raises(OverflowError):
            exact_sum(values)
        return
    got = exact_sum(values)
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
