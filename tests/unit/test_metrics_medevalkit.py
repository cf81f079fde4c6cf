"""The ``medevalkit`` profile: every rule, and parity with NLTK and the ``rouge`` package.

NLTK and ``rouge`` are test-time references only; the profile uses neither.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import pytest

from medvqa.metrics import PROFILES, MedEvalKitProfile, evaluate
from medvqa.metrics._medevalkit import (
    medevalkit_bleu,
    medevalkit_bleu_1_to_4,
    medevalkit_boxed,
    medevalkit_parse,
    medevalkit_pre_extract,
    medevalkit_rouge,
    medevalkit_set_prf,
    medevalkit_tokenize,
)
from medvqa.records import Prediction

_WORDS = [
    "yes", "no", "left", "lung", "the", "ct", "mri", "not", "normal", "lobe", "x-ray",
    "cardiomegaly", "cardiomegaly,", "liver", "a", "of", "right", "kidney", "none",
]  # fmt: skip
_GLUE = [" ", " ", " ", " ", ". ", ".", "  ", "\n", ", ", "..", " . "]


def _text(rng: random.Random, max_words: int = 9) -> str:
    out = []
    for _ in range(rng.randint(0, max_words)):
        out.append(rng.choice(_WORDS))
        out.append(rng.choice(_GLUE))
    if rng.random() < 0.3:
        out.insert(0, rng.choice([" ", ".", "\n"]))
    return "".join(out)[: rng.randint(0, 80)] if rng.random() < 0.2 else "".join(out)


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(_text(rng), _text(rng, 5)) for _ in range(n)]


def test_bleu_equals_nltk_sentence_bleu() -> None:
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pred, truth in _pairs(3000, seed=1):
            ref, hyp = medevalkit_tokenize(truth), medevalkit_tokenize(pred)
            for n in (1, 2, 3, 4):
                expected = nltk_bleu.sentence_bleu([ref], hyp, weights=[1 / n] * n)
                assert medevalkit_bleu(pred, truth, n) == expected, (pred, truth, n)
                assert medevalkit_bleu_1_to_4(pred, truth)[n - 1] == expected, (pred, truth, n)
                checked += expected > 0
    assert checked > 1000  # the strings overlap often enough to exercise the maths


def test_rouge_equals_rouge_package() -> None:
    rouge = pytest.importorskip("rouge")
    scorer = rouge.Rouge()
    raised = 0
    for pred, truth in _pairs(3000, seed=2):
        ours = medevalkit_rouge(pred, truth)
        try:
            theirs = scorer.get_scores(pred.lower(), truth.lower())[0]
        except ValueError:
            raised += 1
            assert ours is None, (pred, truth)
            continue
        assert ours == (theirs["rouge-1"]["f"], theirs["rouge-2"]["f"], theirs["rouge-l"]["f"]), (pred, truth)
    assert 0 < raised < 1500


def test_rouge_on_long_texts_does_not_recurse() -> None:
    long = " ".join(["lung", "liver"] * 1500)
    r = medevalkit_rouge(long, long)
    assert r is not None and r[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{yes}", "yes"),
        ("a \\boxed{x} then \\boxed{ y {z} }", "y {z}"),  # the last box, braces balanced
        ("\\boxed{unclosed", "None"),
        ("nothing", "None"),
    ],
)
def test_boxed(text: str, expected: str) -> None:
    assert medevalkit_boxed(text) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("\\boxed{Left Lung} answer: liver", ("left lung", "boxed")),
        ("<answer>A</answer> and <answer>B</answer>", ("a b", "answer_tag")),
        ("<answer>unclosed", ("<answer>unclosed", "answer_tag")),
        ("  Liver.  ", ("liver.", "none")),
        ("", ("", "none")),
    ],
)
def test_pre_extraction(reply: str, expected: tuple[str, str]) -> None:
    assert medevalkit_pre_extract(reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("the answer is liver", " liver"),  # not stripped
        ("**Answer**: yes", " yes"),
        ("answer: a, but the answer is b", " b"),  # 'answer is' is tried before 'answer:'
        ("the answer is x. final answer: y", " y"),
        ("answer is a; answer is b", " b"),  # the last occurrence
        ("答案:肝脏", "肝脏"),
        ("it is boxed in", "None"),  # the word 'boxed' alone triggers the box rule
        ("<answer>spleen</answer>", "spleen"),
        ("plain", "plain"),
    ],
)
def test_parse_cues_boxed_and_tags(reply: str, expected: str) -> None:
    assert medevalkit_parse(reply)[0] == expected


def _score(
    reply: str, truth: str, *, dataset: str = "vqa_rad", answer_type: str = "open", **kw: object
) -> dict[str, Any]:
    pred = Prediction("i", "q?", truth, reply, answer_type, dataset=dataset)  # type: ignore[arg-type]
    return MedEvalKitProfile(**kw).score_item(pred)  # type: ignore[arg-type,no-any-return]


@pytest.mark.parametrize(
    ("reply", "truth", "right"),
    [
        ("No.", "no", True),
        ("normal", "no", True),  # 'no' is a substring of 'normal'
        ("It is not enlarged", "no", True),
        ("Yes, no doubt", "yes", False),  # both substrings: the XOR gate fails
        ("I know it is yes", "yes", False),  # 'know' holds 'no'
        ("none", "yes", False),
        ("Yes", "yes", True),
        ("The answer is yes.\n", "yes", True),
        ("\\boxed{no}", "no", True),
        ("", "no", False),
    ],
)
def test_closed_xor_gate_and_containment(reply: str, truth: str, right: bool) -> None:
    row = _score(reply, truth, answer_type="open")  # VQA-RAD ignores the annotation
    assert row["closed"] is True
    assert row["correct"] == float(right)


def test_slake_closed_non_yes_no_is_exact_after_cleaning() -> None:
    assert _score("Left.", "left", dataset="slake", answer_type="closed")["correct"] == 1.0
    assert _score("the left", "left", dataset="slake", answer_type="closed")["correct"] == 0.0
    # SLAKE uses the annotation: an OPEN item with a yes/no truth is scored as open (exact match)
    row = _score("yes.", "yes", dataset="slake", answer_type="open")
    assert row["closed"] is False and row["correct"] == 0.0
    # other datasets ignore the annotation: a 'closed' item with truth 'left' is open
    assert _score("left", "left", answer_type="closed")["closed"] is False


def test_open_exact_match_and_metrics() -> None:
    row = _score("Left Lung", "left lung")
    assert row["correct"] == row["em"] == 1.0
    assert row["bleu1"] == 1.0 and row["rouge1"] == pytest.approx(1.0) and row["f1"] == 1.0
    row = _score("The answer is left lung", "left lung")
    assert row["em"] == 0.0  # the cue leaves a leading space
    assert row["recall"] == 1.0


def test_label_swap_parity_mode() -> None:
    true_prf = medevalkit_set_prf("left lung lung", "the left lung")
    assert true_prf is not None
    precision, recall, f1 = true_prf
    plain = _score("left lung lung", "the left lung")
    swapped = _score("left lung lung", "the left lung", swapped_labels=True)
    assert (plain["precision"], plain["recall"], plain["f1"]) == (precision, recall, f1)
    assert (swapped["precision"], swapped["recall"], swapped["f1"]) == (f1, precision, recall)
    assert PROFILES["medevalkit"].to_dict()["swapped_labels"] is False


def test_empty_answer_tags_fall_back_to_the_whole_reply() -> None:
    assert medevalkit_pre_extract("<answer></answer>") == ("<answer></answer>", "answer_tag")


def test_set_prf_keeps_punctuation_and_handles_empty_sides() -> None:
    assert medevalkit_set_prf("cardiomegaly,", "cardiomegaly") == (0.0, 0.0, 0.0)
    assert medevalkit_set_prf("", "liver") is None


@pytest.mark.parametrize("reply", ["", "   ", "...", "\\boxed{}", "answer:"])
def test_empty_replies_never_crash_and_are_counted(reply: str) -> None:
    preds = [
        Prediction("o", "Which organ?", "liver", reply, "open", dataset="vqa_rad"),
        Prediction("c", "Normal?", "no", reply, "closed", dataset="vqa_rad"),
    ]
    r = evaluate(preds, profile="medevalkit", n_boot=10)
    assert r["accuracy"].numerator == 0.0
    assert r["unscorable/open"].numerator == 1.0
    assert r["empty_predictions"].numerator == (2.0 if not reply.strip() else 0.0)


def test_aggregates_and_judge_verdicts() -> None:
    preds = [
        Prediction("a", "Normal?", "no", "No.", "closed", dataset="vqa_rad"),
        Prediction("b", "Organ?", "liver", "the liver", "open", dataset="vqa_rad"),
        Prediction("c", "Side?", "left", "left", "open", dataset="vqa_rad"),
        Prediction("d", "Lobe?", "upper", "lower", "open", dataset="vqa_rad"),
    ]
    r = evaluate(preds, profile="medevalkit", n_boot=50)
    assert (r["accuracy"].numerator, r["accuracy"].n) == (2.0, 4)
    assert (r["accuracy/open"].numerator, r["accuracy/open"].n) == (1.0, 3)
    assert r["accuracy"].ci_low is not None
    judged = MedEvalKitProfile(judge_verdicts={"b": True, "c": True, "d": None}, judge={"model": "m"})
    rj = evaluate(preds, profile=judged, n_boot=0)
    assert rj["accuracy/open"].numerator == 2.0  # b right by the judge, d unparseable counts wrong
    assert rj["judge_unparseable"].numerator == 1.0
    assert rj["em/open"].numerator == 1.0  # the rule-based column is unchanged
    assert rj.options["judge"] == {"model": "m"}
    with pytest.raises(ValueError, match="'d' is open but has no judge verdict"):
        evaluate(preds, profile=MedEvalKitProfile(judge_verdicts={"b": True, "c": True}), n_boot=0)


def test_metric_card_disagreement_table_matches_the_profiles() -> None:
    from pathlib import Path

    card = (Path(__file__).resolve().parents[2] / "docs" / "guide" / "metric-cards.md").read_text()
    section = card.split("## `medevalkit`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    assert len(rows) >= 5
    names = ["paper", "llava_med", "lmms_eval", "multimedeval", "medevalkit", "strict"]
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        truth, answer_type = cells[0].split(" (")[0], "open" if "(open)" in cells[0] else "closed"
        pred = Prediction("x", "q", truth, cells[1].strip("`"), answer_type, dataset="vqa_rad")  # type: ignore[arg-type]
        for name, expected in zip(names, cells[2:]):
            result = evaluate([pred], profile=name, n_boot=0)
            got = result.per_item[0][result.agreement_metrics[0]]
            assert float(got) == float(expected), (line, name)


def test_medevalkit_prompt_set_is_chosen_from_the_truth() -> None:
    from medvqa.chat import build_messages, get_prompt, render_messages
    from medvqa.records import ImageRef, VQASample
    from medvqa.transforms import MedEvalKitPrompt, parse_transforms, transform_from_dict

    def sample(i: str, answer: str) -> VQASample:
        return VQASample(
            id=i, question="Is the heart enlarged?", answer=answer, answer_type="closed",
            answer_type_source="annotation", dataset="d", split="test", image=ImageRef(data=b"x"),
        )  # fmt: skip

    t = parse_transforms("medevalkit")["medevalkit"]
    assert transform_from_dict(t.to_dict()) == t == MedEvalKitPrompt()
    yes_no, other = t([sample("a", " Yes"), sample("b", "left")])
    text = render_messages(build_messages(yes_no, prompt="medevalkit", with_answer=False))
    assert "<image>Is the heart enlarged?\nPlease output 'yes' or 'no'(no extra output).<end" in text
    text = render_messages(build_messages(other, prompt="medevalkit", with_answer=False))
    assert "enlarged?\nPlease answer the question concisely.<end" in text
    assert yes_no.metadata["transforms"] == "medevalkit_prompt()"
    # the template alone does not look at the answer: every question gets the open instruction
    plain = render_messages(
        build_messages(sample("c", "yes"), prompt=get_prompt("medevalkit"), with_answer=False)
    )
    assert "concisely" in plain


def test_cli_swapped_labels_parity_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from medvqa.cli import main

    path = tmp_path / "p.jsonl"
    row = Prediction("a", "q", "the left lung", "left lung lung", "open", dataset="vqa_rad").to_dict()
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    base = ["score", str(path), "--profile", "medevalkit", "--n-boot", "0", "--format", "json"]
    values = []
    for extra in ([], ["--medevalkit-swapped-labels"]):
        assert main([*base, *extra]) == 0
        aggs = json.loads(capsys.readouterr().out)["runs"][0]["aggregates"]
        values.append(tuple(aggs[f"{m}/open"]["value"] for m in ("precision", "recall", "f1")))
        assert json.loads(json.dumps(aggs))  # JSON-clean
    (p, r, f), swapped = values
    assert (p, r) == (1.0, pytest.approx(2 / 3)) and swapped == (f, p, r)


class _Counting(MedEvalKitProfile):
    """Records the id of every item it scores."""

    calls: list[str]

    def score_item(self, pred: Prediction) -> dict[str, Any]:
        self.calls.append(pred.id)
        return super().score_item(pred)


def _counting(**kwargs: Any) -> _Counting:
    prof = _Counting(**kwargs)
    object.__setattr__(prof, "calls", [])
    return prof


def test_repeated_answers_are_scored_once_without_judge_and_per_item_with_one() -> None:
    preds = [Prediction(str(i), "q", "liver", "Liver", "open") for i in range(3)]
    plain = _counting()
    result = evaluate(preds, profile=plain, n_boot=0)
    assert plain.calls == ["0"]
    assert [row["id"] for row in result.per_item] == ["0", "1", "2"]
    judged = _counting(judge_verdicts={"0": True, "1": False, "2": None})
    result = evaluate(preds, profile=judged, n_boot=0)
    assert judged.calls == ["0", "1", "2"]
    assert [row["correct"] for row in result.per_item] == [1.0, 0.0, 0.0]


def test_equal_answers_from_slake_and_another_dataset_are_scored_apart() -> None:
    # SLAKE keeps its closed annotation; elsewhere a non-yes/no truth makes the item open.
    preds = [
        Prediction("a", "q", "left", "left", "closed", dataset="slake"),
        Prediction("b", "q", "left", "left", "closed", dataset="vqa_rad"),
    ]
    rows = evaluate(preds, profile="medevalkit", n_boot=0).per_item
    assert [row["closed"] for row in rows] == [True, False]
