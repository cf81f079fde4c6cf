"""One reader of Med-HALT option fields and one rule for image pools, shared by data and ablations."""

from __future__ import annotations

import json

import pytest

from medvqa._errors import DataFormatError, RowRef
from medvqa.ablations import NonsenseQuestions, abstention, made_up_questions
from medvqa.data import image_pool, load, options_from_metadata, pair_with_images, sample_root
from medvqa.records import ImageRef, Prediction, VQASample


def _prediction(**meta: object) -> Prediction:
    return Prediction(
        id="mh:1",
        question="Which god?",
        reference="I do not know",
        prediction="1",
        answer_type="open",
        metadata=meta,  # type: ignore[arg-type]
    )


def _question(**meta: object) -> VQASample:
    return VQASample(
        id="mh:1",
        question="Which god?",
        answer="I do not know",
        answer_type="open",
        answer_type_source="annotation",
        dataset="med_halt",
        split="test",
        metadata=meta,  # type: ignore[arg-type]
    )


# --- options -------------------------------------------------------------------------------------


def test_fewer_keys_than_options_is_an_error_not_a_silent_drop() -> None:
    meta = {"options": json.dumps(["Zeus", "Thor", "I do not know"]), "option_keys": json.dumps(["0", "1"])}
    with pytest.raises(DataFormatError, match=r"prediction 'mh:1', field 'option_keys': has 2 keys for 3"):
        abstention([_prediction(abstain_option="2", **meta)])
    with pytest.raises(DataFormatError, match=r"sample 'mh:1', field 'option_keys'"):
        NonsenseQuestions(pool=(ImageRef(data=b"x"),))([_question(**meta)])


@pytest.mark.parametrize("field", ["options", "option_keys"])
def test_malformed_json_is_a_named_error(field: str) -> None:
    meta = {"options": json.dumps(["a", "b"]), "option_keys": json.dumps(["0", "1"]), field: "[not json"}
    with pytest.raises(DataFormatError, match=rf"prediction 'mh:1', field '{field}': not valid JSON") as info:
        abstention([_prediction(**meta)])
    assert not isinstance(info.value, json.JSONDecodeError)
    assert info.value.field == field


def test_options_round_trip_from_the_loader() -> None:
    """What load_med_halt writes, the reader gives back key for key."""
    sample = load("med_halt", sample_root() / "med_halt", split="train")[0]
    options = options_from_metadata(sample.metadata, row=f"sample {sample.id!r}")
    assert options is not None and len(options) >= 2
    assert [k for k, _ in options] == json.loads(str(sample.metadata["option_keys"]))
    assert dict(options)[str(sample.metadata["abstain_option"])] == sample.answer


def test_options_object_list_and_absent() -> None:
    assert options_from_metadata({}, row="r") is None
    assert options_from_metadata({"options": ""}, row="r") is None
    assert options_from_metadata({"options": '{"a": "x", "b": 2}'}, row="r") == [("a", "x"), ("b", "2")]
    assert options_from_metadata({"options": '["x", "y"]'}, row="r") == [("0", "x"), ("1", "y")]
    with pytest.raises(DataFormatError, match=r"f.jsonl, line 3, field 'options': option 0 is not text"):
        options_from_metadata({"options": "[null]"}, row=RowRef.line(3), file="f.jsonl")
    with pytest.raises(DataFormatError, match="expected a JSON list or object of options, got int"):
        options_from_metadata({"options": "3"}, row="r")


# --- image pools ---------------------------------------------------------------------------------


def test_one_file_counts_once_whatever_its_name() -> None:
    refs = [ImageRef(path="a.png", root="/d", name=n) for n in ("one", "two", None)]
    assert image_pool(refs) == (refs[0],)


def test_same_relative_path_under_two_roots_is_two_images() -> None:
    pool = image_pool([ImageRef(path="a.png", root="/train"), ImageRef(path="a.png", root="/test")])
    assert [r.root for r in pool] == ["/test", "/train"]


def test_equal_bytes_are_one_image_and_order_does_not_matter() -> None:
    a, b, c = ImageRef(data=b"x" * 3), ImageRef(data=b"xx" + b"x"), ImageRef(data=b"y")
    assert len(image_pool([a, b, c])) == 2
    assert image_pool([c, b, a]) == image_pool([a, c])


def test_samples_without_images_add_nothing_and_bad_items_are_named() -> None:
    with_image = _question().replace(image=ImageRef(path="p.png"))
    assert image_pool([with_image, _question()]) == (ImageRef(path="p.png"),)
    with pytest.raises(TypeError, match="pool item 1 is a str"):
        image_pool([ImageRef(path="p.png"), "q.png"])  # type: ignore[list-item]


def test_every_pool_user_applies_the_same_rule() -> None:
    pool = [ImageRef(data=b"same"), ImageRef(data=b"same"), ImageRef(path="x.png", root="/r")]
    expected = image_pool(pool)
    assert NonsenseQuestions(pool=tuple(pool)).pool == expected
    questions = made_up_questions(pool, n=20, seed=0)
    assert {q.image for q in questions} <= set(expected)
    paired = pair_with_images([_question()], pool, seed=0)[0]
    assert paired.image in expected
