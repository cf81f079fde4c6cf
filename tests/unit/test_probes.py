"""Unit tests of the ablation probes (medvqa.ablations): abstention detection, visual reliance, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.ablations import (
    AblationReport,
    AbstentionRules,
    ProbeError,
    ablation_report,
    abstention,
    detect_abstention,
    visual_reliance,
)
from medvqa.records import Prediction

# Real-looking answers to nonsense questions that abstain, with the rule expected to fire.
ABSTAINING = [
    ("I don't know.", "dont_know"),
    ("I do not know", "dont_know"),
    ("i dont know", "dont_know"),
    ("I\u2019m not sure.", "dont_know"),
    ("I am not sure what this refers to.", "dont_know"),
    ("I'm uncertain about this.", "dont_know"),
    ("No idea.", "dont_know"),
    ("Unknown", "whole_answer"),
    ("N/A", "whole_answer"),
    ("Not applicable.", "whole_answer"),
    ("idk", "whole_answer"),
    ("It cannot be determined from the image.", "cannot_determine"),
    ("This can't be determined.", "cannot_determine"),
    ("Cannot determine.", "cannot_determine"),
    ("I am unable to determine this.", "cannot_determine"),
    ("It is impossible to tell from this image.", "cannot_determine"),
    ("It is not possible to determine the answer.", "cannot_determine"),
    ("There is not enough information to answer.", "cannot_determine"),
    ("Insufficient information.", "cannot_determine"),
    ("The answer cannot be known from this scan.", "cannot_determine"),
    ("I cannot answer this question.", "decline"),
    ("I'm unable to answer that based on the image provided.", "decline"),
    ("Sorry, I can't help with that.", "decline"),
    ("I must decline to answer.", "decline"),
    ("The question is nonsensical.", "invalid_question"),
    ("This question does not make sense.", "invalid_question"),
    ("That organ does not exist.", "invalid_question"),
    ("There is no such organ in the human body.", "invalid_question"),
    ("Dragons are not real.", "invalid_question"),
    ("The structure is fictional.", "invalid_question"),
    ("The question appears to be made-up.", "invalid_question"),
    ("I'm not aware of any such structure.", "dont_know"),
    ("I am not familiar with the term florb.", "dont_know"),
    ("Unclear.", "whole_answer"),
    ("It is unclear from the image.", "cannot_determine"),
    ("There is no information about this in the image.", "cannot_determine"),
    ("No details are given about this structure.", "cannot_determine"),
]

# Confident answers, including medical negatives and uses of "unknown"/"sure" that do not abstain.
CONFIDENT = [
    "No",
    "no.",
    "Yes",
    "yes, there is a fracture",
    "No evidence of fracture.",
    "There is no mass.",
    "There is no pneumothorax.",
    "The liver",
    "left lung",
    "CT",
    "Metastasis of unknown primary.",
    "Cardiomegaly",
    "The lesion is in the right kidney.",
    "Not enlarged.",
    "None",
    "0",
    "Two nodules",
    "The heart is not enlarged.",
    "The dragon is in the liver.",
    "A unicorn.",
    "I think it is pneumonia.",
    "It is determined by the contrast.",
    "Known malignancy.",
    "Not sure-fire sign of cancer but likely benign",
    "Sure, it is a CT.",
    "No information is lost in this CT reconstruction.",
    "Limited data suggests a benign cyst.",
    "There is no data artifact.",
    "The margins are unclear.",
]


@pytest.mark.parametrize(("text", "rule"), ABSTAINING)
def test_abstaining_phrasings(text: str, rule: str) -> None:
    decision = detect_abstention(text)
    assert decision.abstained, text
    assert decision.rule == rule, (text, decision)
    assert decision.matched


@pytest.mark.parametrize("text", CONFIDENT)
def test_confident_phrasings(text: str) -> None:
    decision = detect_abstention(text)
    assert not decision.abstained, (text, decision)
    assert decision.rule == "confident"


OPTIONS = [("0", "The moon"), ("1", "Mars"), ("2", "I do not know")]


@pytest.mark.parametrize(
    ("text", "abstained", "rule"),
    [
        ("2", True, "abstain_option"),
        ("2.", True, "abstain_option"),
        ("(2)", True, "abstain_option"),
        ("Option 2", True, "abstain_option"),
        ("The answer is 2: I do not know", True, "abstain_option"),
        ("Answer: 2", True, "abstain_option"),
        ("I do not know.", True, "abstain_option"),
        ("1", False, "other_option"),
        ("Option 0: The moon", False, "other_option"),
        ("mars", False, "other_option"),
        ("It is Mars, clearly.", False, "other_option"),
        ("3", False, "confident"),  # not an option key: no option picked, no phrase either
        ("I can't tell.", True, "cannot_determine"),  # a phrase, not an option
    ],
)
def test_option_picking(text: str, abstained: bool, rule: str) -> None:
    decision = detect_abstention(text, options=OPTIONS, abstain_option="2")
    assert (decision.abstained, decision.rule) == (abstained, rule), decision


def test_empty_answer_is_counted_apart() -> None:
    assert detect_abstention("  ").rule == "empty"
    assert detect_abstention("...").rule == "empty"


def test_rules_are_configurable() -> None:
    rules = AbstentionRules(extra_phrases=("beyond my expertise",), whole_answers=("pass",))
    assert rules.detect("That is beyond my expertise.").rule == "custom"
    assert rules.detect("Pass.").rule == "whole_answer"
    assert rules.detect("Unknown").rule == "confident"  # the default whole answers were replaced
    only_custom = AbstentionRules(patterns=(("hedge", r"\bperhaps\b"),))
    assert only_custom.detect("Perhaps the liver").rule == "hedge"
    assert not only_custom.detect("I don't know").abstained
    no_options = AbstentionRules(match_options=False)
    assert no_options.detect("2", options=OPTIONS, abstain_option="2").rule == "confident"
    assert AbstentionRules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules
    with pytest.raises(ValueError, match="not a valid regex"):
        AbstentionRules(patterns=(("bad", "(unclosed"),))
    with pytest.raises(ValueError, match="unknown keys"):
        AbstentionRules.from_dict({"phrases": []})


def _medhalt_pred(i: int, text: str) -> Prediction:
    return Prediction(
        id=f"med_halt:{i}",
        question=f"Nonsense {i}?",
        reference="I do not know",
        prediction=text,
        answer_type="open",
        metadata={
            "options": json.dumps(["The moon", "Mars", "I do not know"]),
            "option_keys": json.dumps(["a", "b", "c"]),
            "abstain_option": "c",
        },
    )


def test_abstention_result_counts_interval_and_examples() -> None:
    texts = ["c", "b) Mars", "I don't know", "", "The moon", "Mars", "c.", "nothing to see"]
    preds = [_medhalt_pred(i, t) for i, t in enumerate(texts)]
    r = abstention(preds, name="nonsense", n_examples=2, seed=1)
    assert (r.n, r.abstained, r.confident, r.empty) == (8, 3, 4, 1)
    assert r.rate == pytest.approx(3 / 8)
    assert r.ci_low is not None and r.ci_high is not None and r.ci_low < 3 / 8 < r.ci_high
    assert r.by_rule == {"abstain_option": 2, "confident": 1, "dont_know": 1, "empty": 1, "other_option": 3}
    assert [e["abstained"] for e in r.examples] == [True, True, False, False]
    assert r.examples == abstention(preds, name="nonsense", n_examples=2, seed=1).examples
    assert [d.rule for d in r.decisions][:2] == ["abstain_option", "other_option"]
    as_dict = r.to_dict(decisions=True)
    assert len(as_dict["decisions"]) == 8 and json.dumps(as_dict)
    empty = abstention([])
    assert empty.rate is None and empty.n == 0


def _run(refs: list[str], preds: list[str], tag: str = "") -> list[Prediction]:
    out = []
    for i, (ref, pred) in enumerate(zip(refs, preds)):
        meta = {"transforms": tag} if tag else {}
        out.append(
            Prediction(
                id=f"q{i}",
                question="q",
                reference=ref,
                prediction=pred,
                answer_type="closed" if ref in ("yes", "no") else "open",
                metadata=meta,
            )
        )
    return out


REFS = ["yes", "no"] * 15 + ["liver", "lung", "kidney", "heart", "brain"] * 4


def test_visual_reliance_detects_a_drop_and_counts_changes() -> None:
    normal = _run(REFS, REFS)
    # The ablated run answers "yes" to everything and "liver" to every open question.
    ablated = _run(REFS, ["yes" if r in ("yes", "no") else "liver" for r in REFS], "swap_images(seed=0)")
    r = visual_reliance(normal, list(reversed(ablated)), name="swap", n_boot=300, seed=3)
    assert (r.n, r.n_closed, r.n_open) == (50, 30, 20)
    assert r.transform == "swap_images(seed=0)"
    closed = r.difference("accuracy/closed")
    assert (closed.normal, closed.ablated, closed.drop) == (1.0, 0.5, 0.5)
    assert (closed.only_normal, closed.only_ablated) == (15, 0)
    assert closed.p_mcnemar is not None and closed.p_mcnemar < 0.001
    assert closed.significant and closed.ci_low is not None and closed.ci_low > 0
    open_acc = r.difference("accuracy/open")
    assert open_acc.drop == pytest.approx(0.8)
    assert r.changed == {"all": (31, 50), "closed": (15, 30), "open": (16, 20)}
    assert r.changed_share("open") == pytest.approx(0.8)
    again = visual_reliance(normal, ablated, name="swap", n_boot=300, seed=3)
    assert again.differences == r.differences  # input order does not matter
    with pytest.raises(KeyError, match="no aggregate 'nope'"):
        r.difference("nope")


def test_visual_reliance_no_change_is_not_significant() -> None:
    normal = _run(REFS, REFS)
    r = visual_reliance(normal, _run(REFS, REFS), profile="paper", n_boot=200)
    assert all(d.drop == 0 and not d.significant for d in r.differences if d.drop is not None)
    assert r.changed["all"] == (0, 50)
    sub = visual_reliance(normal, _run(REFS, REFS), metrics=["f1"], profile="paper", n_boot=0)
    assert [d.metric for d in sub.differences] == ["f1"] and sub.differences[0].ci_low is None
    with pytest.raises(KeyError, match="has no aggregate"):
        visual_reliance(normal, normal, metrics=["bleu4"], profile="paper")


def test_visual_reliance_needs_the_same_items() -> None:
    normal = _run(REFS, REFS)
    with pytest.raises(
        ProbeError, match=r"1 items of the normal run are missing from it \(e\.g\. \['q49'\]\)"
    ):
        visual_reliance(normal, normal[:-1])
    with pytest.raises(ProbeError, match="occurs more than once"):
        visual_reliance(normal, [*normal, normal[0]])


def test_report_renders_markdown_and_json(tmp_path: Path) -> None:
    normal = _run(REFS, REFS)
    swapped = _run(REFS, ["yes" if r in ("yes", "no") else "liver" for r in REFS], "swap_images(seed=0)")
    nonsense = [_medhalt_pred(i, t) for i, t in enumerate(["c", "Mars | Venus", "I don't know"])]
    report = ablation_report(
        normal,
        {"swap": swapped},
        nonsense={"nonsense": nonsense},
        n_boot=100,
        config={"model": "tiny", "dataset": "demo"},
    )
    assert isinstance(report, AblationReport)
    md = report.to_markdown()
    assert "| swap | accuracy/closed | 30 | 1.000 | 0.500 | 0.500 [" in md
    assert "| nonsense | 3 | 2 | 0.667 [" in md
    assert "Mars \\| Venus" in md  # table cells are escaped
    assert "| model | tiny |" in md
    md_path, json_path = report.write(tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["reliance"][0]["name"] == "swap" and data["abstention"][0]["abstained"] == 2
    assert md_path.read_text() == md


def test_option_text_listed_twice_counts_as_abstaining() -> None:
    # A real Med-HALT row lists "I do not know" as two options; quoting it abstains.
    options = [("0", "Unicorns"), ("1", "I do not know"), ("2", "I do not know")]
    decision = detect_abstention("I do not know", options=options, abstain_option="2")
    assert (decision.abstained, decision.rule) == (True, "abstain_option")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("swap,foo", "unknown transform 'foo'"), (" , ", "no transform named")],
)
def test_ablate_command_names_every_valid_transform_on_a_bad_list(
    spec: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medvqa.cli import main

    code = main(
        ["ablate", "--model", "tiny", "--dataset", "vqa_rad", "--transform", spec, "--output", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and expected in err
    assert "nonsense_plain" in err and "expert_prepend" in err
    assert not any(tmp_path.iterdir())  # nothing was generated or written
