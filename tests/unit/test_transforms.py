"""Unit tests of the ablation transforms (medvqa.ablations): each ablation on tiny hand-made samples."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from medvqa.ablations import (
    BlankImage,
    Compose,
    NoImage,
    NonsenseQuestions,
    PromptVariant,
    SwapImages,
    TransformError,
    made_up_questions,
    parse_transforms,
    transform_from_dict,
)
from medvqa.chat import EXPERT_INSTRUCTION, build_messages
from medvqa.records import ImageRef, VQASample


def _sample(i: int | str, image: ImageRef | None, **meta: object) -> VQASample:
    return VQASample(
        id=f"s{i}",
        question=f"Question {i}?",
        answer="yes",
        answer_type="closed",
        answer_type_source="annotation",
        dataset="demo",
        split="test",
        image=image,
        metadata=meta,  # type: ignore[arg-type]
    )


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 9)) -> ImageRef:
    Image.new("RGB", size, colour).save(path)
    return ImageRef(path=str(path), root=str(path.parent), name=path.name)


def _content(sample: VQASample) -> bytes:
    assert sample.image is not None
    return sample.image.read_bytes()


# --- SwapImages ----------------------------------------------------------------------------------


def test_swap_compares_content_not_names(tmp_path: Path) -> None:
    # Two files with the same bytes under different names (as in VQA-RAD copies), two questions each.
    a1 = _png(tmp_path / "a1.png", (255, 0, 0))
    (tmp_path / "a2.png").write_bytes((tmp_path / "a1.png").read_bytes())
    a2 = ImageRef(path=str(tmp_path / "a2.png"), root=str(tmp_path), name="a2.png")
    b = _png(tmp_path / "b.png", (0, 255, 0))
    c = _png(tmp_path / "c.png", (0, 0, 255))
    samples = [_sample(0, a1), _sample(1, a2), _sample(2, b), _sample(3, b), _sample(4, c), _sample(5, c)]
    for seed in range(20):
        out = SwapImages(seed=seed)(samples)
        for before, after in zip(samples, out):
            assert _content(before) != _content(after), (seed, before.id)
        assert Counter(s.image.label for s in out if s.image) == Counter(
            s.image.label for s in samples if s.image
        )


def test_swap_records_source_and_tag(tmp_path: Path) -> None:
    refs = [_png(tmp_path / f"{i}.png", (i * 40, 0, 0)) for i in range(4)]
    samples = [_sample(i, r) for i, r in enumerate(refs)]
    out = SwapImages(seed=7)(samples)
    by_id = {s.id: s for s in samples}
    for s in out:
        assert s.metadata["transforms"] == "swap_images(seed=7)"
        donor = by_id[str(s.metadata["swap_source_id"])]
        assert donor.image == s.image and donor.id != s.id


def test_swap_impossible_names_the_content() -> None:
    same = ImageRef(data=b"same", name="same.png")
    samples = [_sample(i, same) for i in range(3)] + [_sample(9, ImageRef(data=b"other"))]
    with pytest.raises(TransformError, match=r"used by 3 of 4 samples, more than half \(at most 2 allowed\)"):
        SwapImages()(samples)


def test_swap_exactly_half_is_possible() -> None:
    samples = [_sample(i, ImageRef(data=b"same")) for i in range(2)] + [
        _sample(2, ImageRef(data=b"x")),
        _sample(3, ImageRef(data=b"y")),
    ]
    out = SwapImages(seed=1)(samples)
    assert all(_content(a) != _content(b) for a, b in zip(samples, out))


def test_swap_needs_images() -> None:
    samples = [_sample(0, ImageRef(data=b"a")), _sample(1, None), _sample(2, ImageRef(data=b"b"))]
    with pytest.raises(TransformError, match=r"1 of 3 samples have no image \('s1'\)"):
        SwapImages()(samples)


def test_swap_rejects_duplicate_ids() -> None:
    s = _sample(0, ImageRef(data=b"a"))
    with pytest.raises(TransformError, match="occurs more than once"):
        SwapImages()([s, s.replace(image=ImageRef(data=b"b"))])


def test_swap_empty_input() -> None:
    assert SwapImages()([]) == []


def test_swap_within_groups_stays_in_group() -> None:
    samples = [_sample(i, ImageRef(data=bytes([i])), modality="CT" if i < 4 else "MRI") for i in range(9)]
    out = SwapImages(seed=2, within=("modality",))(samples)
    by_id = {s.id: s for s in samples}
    for s in out:
        donor = by_id[str(s.metadata["swap_source_id"])]
        assert donor.metadata["modality"] == s.metadata["modality"]
        assert donor.id != s.id


def test_swap_within_missing_field_is_an_error() -> None:
    samples = [_sample(0, ImageRef(data=b"a"), modality="CT"), _sample(1, ImageRef(data=b"b"))]
    with pytest.raises(TransformError, match=r"sample 's1' has no metadata field 'modality'"):
        SwapImages(within="modality")(samples)


def test_swap_within_infeasible_group_error_or_pool() -> None:
    samples = [_sample(i, ImageRef(data=bytes([i])), organ="chest") for i in range(4)]
    samples.append(_sample(9, ImageRef(data=b"z"), organ="head"))  # alone in its group
    with pytest.raises(TransformError, match=r"group \{'organ': 'head'\}: only 1 sample.*fallback='pool'"):
        SwapImages(within=("organ",))(samples)
    # Pooling: the lonely sample is swapped with the other infeasible groups; here it is the only one,
    # so pooling cannot help either.
    with pytest.raises(TransformError, match="pooling them does not help"):
        SwapImages(within=("organ",), fallback="pool")(samples)
    samples.append(_sample(10, ImageRef(data=b"w"), organ="knee"))
    out = SwapImages(within=("organ",), fallback="pool")(samples)
    pooled = {s.id: s.metadata.get("swap_pooled") for s in out}
    assert pooled["s9"] is True and pooled["s10"] is True and pooled["s0"] is None
    assert {out[-2].metadata["swap_source_id"], out[-1].metadata["swap_source_id"]} == {"s9", "s10"}


def test_swap_index_rule_is_the_papers() -> None:
    # Paper parity: another row's image, which may have the same content; the multiset is not kept.
    shared = ImageRef(data=b"img", name="shared")
    samples = [_sample(i, shared) for i in range(5)]
    out = SwapImages(seed=0, rule="index")(samples)
    assert all(s.metadata["swap_source_id"] != s.id for s in out)
    assert out[0].metadata["transforms"] == "swap_images(seed=0, rule='index')"
    with pytest.raises(TransformError, match="at least 2"):
        SwapImages(rule="index")(samples[:1])


def test_swap_option_validation() -> None:
    with pytest.raises(ValueError, match="rule must be one of 'content', 'index'"):
        SwapImages(rule="rows")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int"):
        SwapImages(seed=True)
    with pytest.raises(ValueError, match="within= applies to rule='content' only"):
        SwapImages(rule="index", within=("organ",))


# --- BlankImage / NoImage --------------------------------------------------------------------------


def test_blank_constant_and_noise(tmp_path: Path) -> None:
    ref = _png(tmp_path / "x.png", (200, 10, 10), size=(31, 17))
    samples = [_sample(0, ref), _sample(1, None)]
    out = BlankImage(value=255, size=(5, 4))(samples)
    for s in out:
        assert s.image is not None and s.image.data is not None
        img = s.image.open()
        assert img.size == (5, 4) and img.getcolors() == [(20, (255, 255, 255))]
        assert s.metadata["transforms"] == "blank_image(value=255, size=(5, 4))"
    same = BlankImage(size="original")([samples[0]])[0]
    assert same.image is not None and same.image.open().size == (31, 17)
    with pytest.raises(TransformError, match="has no image to take the size from"):
        BlankImage(size="original")([samples[1]])

    noise = BlankImage(kind="noise", seed=3, size=(16, 16))(samples)
    assert noise[0].image == noise[1].image or noise[0].image.data == noise[1].image.data  # type: ignore[union-attr]
    assert len(noise[0].image.open().getcolors(4096) or []) > 10  # type: ignore[union-attr]
    again = BlankImage(kind="noise", seed=3, size=(16, 16))(samples)
    other = BlankImage(kind="noise", seed=4, size=(16, 16))(samples)
    assert again[0].image.data == noise[0].image.data  # type: ignore[union-attr]
    assert other[0].image.data != noise[0].image.data  # type: ignore[union-attr]
    per = BlankImage(kind="noise", seed=3, size=(16, 16), per_sample=True)(samples)
    assert per[0].image.data != per[1].image.data  # type: ignore[union-attr]
    assert (
        per[0].metadata["transforms"] == "blank_image(kind='noise', seed=3, size=(16, 16), per_sample=True)"
    )


def test_blank_validation() -> None:
    with pytest.raises(ValueError, match="value must be an int from 0 to 255"):
        BlankImage(value=256)
    with pytest.raises(ValueError, match="size must be"):
        BlankImage(size=(0, 5))
    with pytest.raises(ValueError, match="kind must be one of"):
        BlankImage(kind="grey")  # type: ignore[arg-type]


def test_no_image_renders_text_only() -> None:
    s = _sample(0, ImageRef(data=b"a"))
    out = NoImage()([s])[0]
    assert out.image is None and s.image is not None
    content = build_messages(out, with_answer=False)[0]["content"]
    assert all(item["type"] == "text" for item in content)


# --- PromptVariant -------------------------------------------------------------------------------


def test_prompt_variant_modes_reach_the_chat_layer() -> None:
    s = _sample(0, ImageRef(data=b"a"))
    replaced = PromptVariant.expert()([s])[0]
    text = build_messages(replaced, with_answer=False)[0]["content"][0]["text"]
    assert text == EXPERT_INSTRUCTION
    prepended = PromptVariant.expert(mode="prepend")([s])[0]
    assert prepended.metadata["prompt_instruction"] == f"{EXPERT_INSTRUCTION} Answer briefly."
    custom = PromptVariant("Reply in one word.", mode="append")([s])[0]
    assert custom.metadata["prompt_instruction"] == "Answer briefly. Reply in one word."
    assert str(custom.metadata["transforms"]).startswith("prompt_variant(label='custom-")
    # Chained variants extend the instruction set by the earlier one.
    chained = (PromptVariant("First.") + PromptVariant("Second.", mode="append"))([s])[0]
    assert chained.metadata["prompt_instruction"] == "First. Second."


def test_prompt_variant_validation() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        PromptVariant("  ")
    with pytest.raises(ValueError, match="label may not contain"):
        PromptVariant("x", label="a+b")


# --- NonsenseQuestions ---------------------------------------------------------------------------


def _medhalt(i: int, options: object = None) -> VQASample:
    opts = options if options is not None else {"0": "The moon", "1": "Mars", "2": "I do not know"}
    return VQASample(
        id=f"med_halt:test:{i}",
        question=f"Which planet rules organ {i}?",
        answer="I do not know",
        answer_type="open",
        answer_type_source="annotation",
        dataset="med_halt",
        split="test",
        metadata={"options": json.dumps(opts), "abstain_option": "2"},
    )


def test_nonsense_questions_with_and_without_options() -> None:
    pool = [ImageRef(data=bytes([i]), name=f"p{i}") for i in range(5)]
    samples = [_medhalt(i) for i in range(6)]
    with_opts = NonsenseQuestions(pool=tuple(pool), seed=1)(samples)
    assert with_opts[0].question.endswith("Options:\n0. The moon\n1. Mars\n2. I do not know")
    assert all(s.image is not None and s.image.name in {p.name for p in pool} for s in with_opts)
    assert with_opts[0].metadata["nonsense"] is True and with_opts[0].metadata["with_options"] is True
    plain = NonsenseQuestions(pool=tuple(pool), seed=1, with_options=False)(samples)
    assert plain[0].question == samples[0].question
    assert [s.image for s in plain] == [s.image for s in with_opts]  # same draw: keyed on id and seed
    assert plain[0].metadata["transforms"] == "nonsense_questions(seed=1, with_options=False)"
    listed = NonsenseQuestions(pool=tuple(pool))([_medhalt(0, ["a", "I do not know"])])[0]
    assert listed.question.endswith("0. a\n1. I do not know")


def test_nonsense_questions_accepts_samples_as_pool_and_errors() -> None:
    # Three questions about one image file: the image counts once in the pool.
    pool_samples = [_sample(i, ImageRef(path="/data/one.png", name="one")) for i in range(3)]
    pool_samples.append(_sample(3, None))  # samples without image add nothing
    t = NonsenseQuestions(pool=pool_samples)  # type: ignore[arg-type]
    assert len(t.pool) == 1
    with pytest.raises(ValueError, match="at least one image"):
        NonsenseQuestions(pool=())
    bare = _medhalt(0).replace(metadata={})
    with pytest.raises(TransformError, match="'options' is missing"):
        NonsenseQuestions(pool=(ImageRef(data=b"x"),))([bare])


def test_made_up_questions() -> None:
    pool = [ImageRef(data=b"x", name="x")]
    qs = made_up_questions(pool, n=8, seed=3)
    assert len(qs) == 8 and len({q.id for q in qs}) == 8
    assert all("{" not in q.question for q in qs)
    assert qs == made_up_questions(pool, n=8, seed=3)
    assert [q.question for q in qs] != [q.question for q in made_up_questions(pool, n=8, seed=4)]
    with pytest.raises(TransformError, match=r"uses \{thing\}, which fillers lacks"):
        made_up_questions(pool, templates=("What is the {thing}?",))


# --- Compose, registry, purity -------------------------------------------------------------------


def test_compose_order_and_repr() -> None:
    samples = [_sample(i, ImageRef(data=bytes([i]))) for i in range(4)]
    first = Compose((NoImage(), BlankImage(size=(2, 2))))(samples)
    assert all(s.image is not None for s in first)
    second = Compose((BlankImage(size=(2, 2)), NoImage()))(samples)
    assert all(s.image is None for s in second)
    assert first[0].metadata["transforms"] == "no_image()+blank_image(size=(2, 2))"
    assert repr(SwapImages(seed=1) + NoImage()) == (
        "Compose(SwapImages(seed=1, rule='content', within=(), fallback='error'), NoImage())"
    )
    assert Compose(())(samples) == samples


def test_to_dict_round_trip(tmp_path: Path) -> None:
    ref = _png(tmp_path / "p.png", (1, 2, 3))
    for t in (
        SwapImages(seed=3, within=("organ", "modality"), fallback="pool"),
        BlankImage(kind="noise", size="original", seed=2),
        NoImage(),
        PromptVariant("Be brief.", mode="prepend"),
        NonsenseQuestions(pool=(ref,), seed=5, with_options=False),
        Compose((SwapImages(), PromptVariant.expert())),
    ):
        data = json.loads(json.dumps(t.to_dict()))
        assert transform_from_dict(data) == t
    with pytest.raises(ValueError, match="unknown transform type 'rotate'"):
        transform_from_dict({"type": "rotate"})
    with pytest.raises(ValueError, match=r"unknown options \['sed'\]"):
        transform_from_dict({"type": "swap_images", "sed": 1})


def test_parse_transforms() -> None:
    parsed = parse_transforms("swap,blank, noimage,expert,swap_index,noise+expert_prepend", seed=4)
    assert list(parsed) == ["swap", "blank", "noimage", "expert", "swap_index", "noise+expert_prepend"]
    assert parsed["swap"] == SwapImages(seed=4)
    assert parsed["noise+expert_prepend"].tag == (
        "blank_image(kind='noise', seed=4)+prompt_variant(label='expert', mode='prepend')"
    )
    with pytest.raises(ValueError, match=r"unknown transform 'rotate'.*valid names: swap"):
        parse_transforms("swap,rotate")
    with pytest.raises(ValueError, match="no transform named"):
        parse_transforms(" , ")


def test_transforms_do_not_mutate_input(tmp_path: Path) -> None:
    samples = [_sample(i, ImageRef(data=bytes([i]), name=f"i{i}"), organ="chest") for i in range(6)]
    snapshot = [s.to_dict() for s in samples]
    for t in (SwapImages(seed=1), BlankImage(size=(2, 2)), NoImage(), PromptVariant.expert()):
        t(samples)
        t(tuple(samples))
    assert [s.to_dict() for s in samples] == snapshot


def test_blank_png_is_valid_png() -> None:
    out = BlankImage(size=(3, 3))([_sample(0, None)])[0]
    assert out.image is not None and out.image.data is not None
    assert Image.open(io.BytesIO(out.image.data)).format == "PNG"
