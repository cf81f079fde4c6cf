"""Properties of the data layer: answer-type inference and id stability."""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from medvqa.data import content_id, load
from medvqa.records import infer_answer_type
from tests.strategies import any_text, data_questions, data_rows, yes_no_variants

_PUNCT = ["", ".", "!", "?", "..."]


@given(yes_no_variants)
def test_yes_no_in_any_writing_is_closed(answer: str) -> None:
    assert infer_answer_type(answer) == "closed"


# An alphabet on which yes/no spellings come up often and where NFKC and case folding are plain
# ASCII lowercasing, so that a regular expression written from the docstring is an independent oracle.
_CLOSED_ALPHABET = "yesnoYESNOta .!?,;:\t\n"
_CLOSED_ORACLE = re.compile(r"\s*(yes|no)\s*[.!?,;:]*\s*", re.IGNORECASE)


@settings(max_examples=400)
@given(st.text(_CLOSED_ALPHABET, max_size=9))
def test_closed_exactly_for_yes_or_no_with_trailing_punctuation(answer: str) -> None:
    """Closed iff the answer is yes/no in any case, surrounded by whitespace, then trailing punctuation."""
    assert (infer_answer_type(answer) == "closed") == bool(_CLOSED_ORACLE.fullmatch(answer))


@given(any_text)
def test_closed_answers_spell_yes_or_no(answer: str) -> None:
    """Any closed answer holds the letters of yes or no once NFKC-folded; anything else is open."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", answer).casefold()
    if infer_answer_type(answer) == "closed":
        assert "yes" in folded or "no" in folded
    else:
        assert infer_answer_type(answer) == "open"


@given(any_text, st.sampled_from(["", " ", "\t\n"]), st.sampled_from(_PUNCT), st.booleans())
def test_inference_ignores_case_whitespace_and_trailing_punctuation(
    answer: str, pad: str, punct: str, upper: bool
) -> None:
    assume(answer.upper().casefold() == answer.casefold())  # some characters change under upper()
    variant = pad + (answer.upper() if upper else answer) + punct + pad
    assert infer_answer_type(variant) == infer_answer_type(answer + punct)


@given(st.text(min_size=1, max_size=20), data_questions, st.integers(min_value=0, max_value=3))
def test_content_ids_ignore_case_and_spacing_of_the_question(image: str, question: str, k: int) -> None:
    assume(question.upper().casefold() == question.casefold())
    loud = "  " + question.upper().replace(" ", "   ") + " "
    assert content_id("x", image, loud, k) == content_id("x", image, question, k)
    assert content_id("x", image, question, k) != content_id("x", image, question, k + 1)


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (3, 3), (40 * i, 255 - 40 * i, 7)).save(buf, "PNG")
    return buf.getvalue()


def _imagefolder(root: Path, rows: list[tuple[int, str, str]], names: list[str]) -> Path:
    folder = root / "train"
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(_png(i))
    lines = [json.dumps({"file_name": names[i], "question": q, "answer": a}) for i, q, a in rows]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@settings(max_examples=25, deadline=None)
@given(data_rows, st.randoms(use_true_random=False))
def test_same_row_same_id_under_reordering_and_renaming(
    rows: list[tuple[int, str, str]], rnd: object
) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        a = load("vqa_rad", _imagefolder(Path(tmp) / "a", rows, ["a.png", "b.png", "c.png"]), split="train")
        # same rows, shuffled, and image files renamed: ids follow the image bytes, not the names
        b = load(
            "vqa_rad", _imagefolder(Path(tmp) / "b", shuffled, ["z1.png", "z2.png", "z3.png"]), split="train"
        )
    ids_a = sorted((s.id, s.question, s.answer) for s in a)
    ids_b = sorted((s.id, s.question, s.answer) for s in b)
    # the multiset of ids is the same; rows that are exact duplicates may swap occurrence indices
    assert [i for i, _, _ in ids_a] == [i for i, _, _ in ids_b]
    key_a = {(s.id): s.question for s in a}
    assert all(key_a[s.id] == s.question for s in b)


@settings(max_examples=10, deadline=None)
@given(data_rows)
def test_same_ids_across_imagefolder_and_dataset_object(rows: list[tuple[int, str, str]]) -> None:
    import datasets

    with tempfile.TemporaryDirectory() as tmp:
        native = load("vqa_rad", _imagefolder(Path(tmp), rows, ["a.png", "b.png", "c.png"]), split="train")
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": _png(i), "path": None} for i, _, _ in rows],
            "question": [q for _, q, _ in rows],
            "answer": [a for _, _, a in rows],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "answer": datasets.Value("string"),
            }
        ),
    )
    assert load("vqa_rad", ds, split="train").ids() == native.ids()


def _stays_inside(parts: list[str]) -> bool:
    """A walk over the written components: '..' climbs one level, and climbing above the root escapes."""
    depth = 0
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        else:
            depth += 1
    return depth > 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b c", ".", "..", ""]), min_size=1, max_size=6),
    st.lists(st.sampled_from(["/", "\\"]), min_size=5, max_size=5),
)
def test_an_image_path_is_refused_iff_it_climbs_out_as_written(parts: list[str], seps: list[str]) -> None:
    """Judged on the written path alone: the same verdict with '/' or '\\' separators, no file needed."""
    import os

    from medvqa._errors import ImageLoadError
    from medvqa.records import ImageRef

    written = parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:]))
    if written.startswith(("/", "\\")):
        return  # absolute: refused by another rule, tested with the snapshot tests
    root = os.path.join(tempfile.gettempdir(), "medvqa-root")
    ref = ImageRef(path=os.path.join(root, written), root=root)
    try:
        ref.resolved_path()
        refused = False
    except ImageLoadError:
        refused = True
    assert refused == (not _stays_inside(written.replace("\\", "/").split("/")))
