"""Properties of the ablation transforms, each stated in its test's first line."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from medvqa.ablations import (
    BlankImage,
    Compose,
    NoImage,
    PromptVariant,
    SwapImages,
    Transform,
    TransformError,
)
from medvqa.records import VQASample
from tests.strategies import image_sample_lists

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _content(sample: VQASample) -> bytes:
    assert sample.image is not None
    return sample.image.read_bytes()


def _feasible(samples: list[VQASample]) -> bool:
    counts = Counter(_content(s) for s in samples)
    return len(samples) == 0 or (len(samples) >= 2 and 2 * max(counts.values()) <= len(samples))


@SETTINGS
@given(image_sample_lists(), st.integers(0, 2**31))
def test_swap_is_a_content_derangement_or_a_clear_error(samples: list[VQASample], seed: int) -> None:
    """No sample keeps an image with the same content whenever no content exceeds half; else TransformError."""
    if not _feasible(samples):
        with pytest.raises(TransformError, match=r"more than half|only 1 sample"):
            SwapImages(seed=seed)(samples)
        return
    out = SwapImages(seed=seed)(samples)
    assert [s.id for s in out] == [s.id for s in samples]
    assert all(_content(a) != _content(b) for a, b in zip(samples, out))


@SETTINGS
@given(image_sample_lists(), st.integers(0, 2**31))
def test_swap_keeps_the_multiset_of_images(samples: list[VQASample], seed: int) -> None:
    """The swapped images are a permutation of the original image references."""
    assume(_feasible(samples))
    out = SwapImages(seed=seed)(samples)
    assert Counter(s.image.name for s in out if s.image) == Counter(s.image.name for s in samples if s.image)


@SETTINGS
@given(image_sample_lists(), st.integers(0, 2**31), st.randoms(use_true_random=False))
def test_swap_is_keyed_on_ids_not_order(samples: list[VQASample], seed: int, rnd: random.Random) -> None:
    """Same seed, same samples in any order: every sample gets the same image."""
    assume(_feasible(samples))
    shuffled = list(samples)
    rnd.shuffle(shuffled)
    first = {s.id: s.image for s in SwapImages(seed=seed)(samples)}
    second = {s.id: s.image for s in SwapImages(seed=seed)(shuffled)}
    assert first == second


@settings(max_examples=60, deadline=None)
@given(st.integers(6, 14), st.integers(0, 2**31))
def test_swap_changes_with_the_seed(n: int, seed: int) -> None:
    """With six or more distinct images, some other seed among the next five gives another assignment."""
    from medvqa.records import ImageRef

    samples = [
        VQASample(
            id=f"q{i}",
            question="q",
            answer="no",
            answer_type="closed",
            answer_type_source="annotation",
            dataset="d",
            split="test",
            image=ImageRef(data=b"img%d" % i, name=str(i)),
        )
        for i in range(n)
    ]
    base = [s.image for s in SwapImages(seed=seed)(samples)]
    assert base == [s.image for s in SwapImages(seed=seed)(samples)]
    assert any(base != [s.image for s in SwapImages(seed=seed + k)(samples)] for k in range(1, 6))


@SETTINGS
@given(image_sample_lists(), st.integers(0, 2**31))
def test_swap_within_keeps_groups(samples: list[VQASample], seed: int) -> None:
    """With within=("modality",), every donor has the sample's modality (or a clear error)."""
    by_id = {s.id: s for s in samples}
    groups = {m: [s for s in samples if s.metadata["modality"] == m] for m in ("CT", "MRI")}
    if not all(_feasible(g) for g in groups.values()):
        with pytest.raises(TransformError, match=r"in the group \{'modality': "):
            SwapImages(seed=seed, within=("modality",))(samples)
        return
    out = SwapImages(seed=seed, within=("modality",))(samples)
    for s in out:
        donor = by_id[str(s.metadata["swap_source_id"])]
        assert donor.metadata["modality"] == s.metadata["modality"]
        assert _content(donor) != _content(by_id[s.id])


_TRANSFORMS: list[Transform] = [
    SwapImages(seed=1, rule="index"),
    BlankImage(size=(2, 2)),
    BlankImage(kind="noise", size=(2, 2), seed=1),
    NoImage(),
    PromptVariant.expert(),
    PromptVariant("Say it.", mode="append"),
]


@SETTINGS
@given(image_sample_lists(), st.sampled_from(_TRANSFORMS))
def test_transforms_never_mutate_their_input(samples: list[VQASample], transform: Transform) -> None:
    """Applying a transform leaves the input samples exactly as they were."""
    before = [(s.to_dict(), s.image) for s in samples]
    try:
        out: list[VQASample] | None = transform(samples)
    except TransformError:  # only the swap refuses (infeasible lists); the input must still be intact
        assert isinstance(transform, SwapImages)
        out = None
    assert [(s.to_dict(), s.image) for s in samples] == before
    if out is None:
        return
    assert len(out) == len(samples)
    assert all(str(s.metadata["transforms"]).endswith(transform.tag) for s in out)


@SETTINGS
@given(image_sample_lists(), st.lists(st.sampled_from(_TRANSFORMS[1:]), min_size=1, max_size=4))
def test_composition_applies_in_order(samples: list[VQASample], chain: list[Transform]) -> None:
    """Compose(a, b, ...) equals applying a, then b, ...; tags are joined with '+' in that order."""
    step = list(samples)
    for t in chain:
        step = t(step)
    composed = Compose(tuple(chain))(samples)
    assert composed == step
    assert [s.image for s in composed] == [s.image for s in step]
    expected_tag = "+".join(t.tag for t in chain)
    assert all(s.metadata["transforms"] == expected_tag for s in composed)
