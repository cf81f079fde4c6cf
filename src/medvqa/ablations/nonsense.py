"""Nonsense questions: questions with no sensible answer, for the abstention probe.

:class:`NonsenseQuestions` turns Med-HALT ``reasoning_fake`` samples into image questions
(each paired with an image from a pool, optionally showing the options), and
:func:`made_up_questions` writes new ones from templates. The options are read by
:func:`medvqa.data.options_from_metadata` (the one reader of Med-HALT's option fields), and
images are pooled by :func:`medvqa.data.image_pool` (the one rule for image pools).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from medvqa.ablations.transforms import TRANSFORMS_KEY, Transform, TransformError, _check_seed, _record, _rng
from medvqa.records import ImageRef, VQASample

__all__ = [
    "DEFAULT_FILLERS",
    "DEFAULT_NONSENSE_TEMPLATES",
    "NonsenseQuestions",
    "format_options",
    "made_up_questions",
]


def _options_of(sample: VQASample) -> list[tuple[str, str]]:
    """The ``(key, text)`` options of a Med-HALT sample (read by the data layer's one reader)."""
    from medvqa.data import options_from_metadata

    options = options_from_metadata(sample.metadata, row=f"sample {sample.id!r}")
    if not options:
        raise TransformError(
            f"sample {sample.id!r}: metadata field 'options' is missing or empty; Med-HALT samples "
            "carry their options there as a JSON string (use with_options=False for questions without)"
        )
    return options


def format_options(question: str, options: Sequence[tuple[str, str]]) -> str:
    """Append numbered options to a question, one per line (the layout of Med-HALT's prompts).

    >>> print(format_options("Which is it?", [("0", "a cat"), ("1", "I do not know")]))
    Which is it?
    Options:
    0. a cat
    1. I do not know
    """
    lines = [question.rstrip(), "Options:"] + [f"{key}. {text}" for key, text in options]
    return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class NonsenseQuestions(Transform):
    """Turn Med-HALT ``reasoning_fake`` samples into image questions for the abstention probe.

    Med-HALT's nonsense questions have no image; each sample gets one image from ``pool``
    through :func:`medvqa.data.pair_with_images` (drawn with the seed, keyed on the sample
    id; the order of the pool does not matter). With ``with_options=True`` the question
    shows the options, including the abstaining one ("I do not know"); without, only the
    question is asked. The reference answer stays the abstaining option's text, and the
    sample is marked ``nonsense=True`` and ``with_options`` in its metadata; the options
    and the abstaining key stay in the metadata for scoring with
    :func:`medvqa.ablations.abstention`.

    Attributes:
        pool: The images to draw from (for example the images of the test split of the
            dataset under study). An image shared by several questions counts once.
        seed: Seed of the draw.
        with_options: Show the options in the question.

    >>> meta = {"options": '{"0": "Zeus", "1": "I do not know"}', "abstain_option": "1"}
    >>> s = VQASample(id="mh:1", question="Which god rules the spleen?", answer="I do not know",
    ...               answer_type="open", answer_type_source="annotation", dataset="med_halt",
    ...               split="test", metadata=meta)
    >>> t = NonsenseQuestions(pool=(ImageRef(data=b"x", name="x.png"),), seed=0)
    >>> t
    NonsenseQuestions(pool=<1 image>, seed=0, with_options=True)
    >>> out = t([s])
    >>> print(out[0].question)
    Which god rules the spleen?
    Options:
    0. Zeus
    1. I do not know
    >>> out[0].image.name, out[0].metadata["transforms"]
    ('x.png', 'nonsense_questions(seed=0)')
    """

    name: ClassVar[str] = "nonsense_questions"
    pool: tuple[ImageRef, ...] = field(default=(), metadata={"tag": False})
    seed: int = 0
    with_options: bool = True

    def __post_init__(self) -> None:
        _check_seed(self.seed, "NonsenseQuestions")
        from medvqa.data import image_pool

        object.__setattr__(self, "pool", image_pool(self.pool, who="NonsenseQuestions"))
        if not self.pool:
            raise ValueError("NonsenseQuestions: pool must hold at least one image")
        if not isinstance(self.with_options, bool):
            raise TypeError(f"NonsenseQuestions: with_options must be a bool, got {self.with_options!r}")

    @property
    def tag(self) -> str:
        """``nonsense_questions(seed=..., with_options=False)`` (the pool is not shown)."""
        extra = "" if self.with_options else ", with_options=False"
        return f"{self.name}(seed={self.seed!r}{extra})"

    def __repr__(self) -> str:
        n = len(self.pool)
        return (
            f"NonsenseQuestions(pool=<{n} image{'s' if n != 1 else ''}>, seed={self.seed!r}, "
            f"with_options={self.with_options!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The options and the pool as image descriptions (in-memory images cannot round-trip)."""
        return {
            "type": self.name,
            "seed": self.seed,
            "with_options": self.with_options,
            "pool": [r.to_dict() for r in self.pool],
        }

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        out = []
        from medvqa.data import pair_with_images

        for s in pair_with_images(samples, self.pool, seed=self.seed):
            question = format_options(s.question, _options_of(s)) if self.with_options else s.question
            changed = s.replace(question=question, answer_type="open")
            out.append(_record(changed, self.tag, nonsense=True, with_options=self.with_options))
        return out


DEFAULT_NONSENSE_TEMPLATES: tuple[str, ...] = (
    "What is the name of the {creature} visible in the {organ}?",
    "How many {creature}s are nesting in the {organ} in this image?",
    "Which {element} crystal is growing in the {organ}?",
    "Is the {organ} in this image singing in {language}?",
    "What {colour} spell was used to take this {modality} image?",
    "In which century was the {creature} in the {organ} born?",
)
"""Made-up questions with no sensible answer, written for this library (the paper's five are not published)."""

DEFAULT_FILLERS: Mapping[str, tuple[str, ...]] = {
    "creature": ("dragon", "unicorn", "mermaid", "griffin", "phoenix"),
    "organ": ("left lung", "liver", "frontal lobe", "right kidney", "spleen"),
    "element": ("kryptonite", "mithril", "unobtainium"),
    "language": ("Latin", "Klingon", "Elvish"),
    "colour": ("purple", "invisible", "golden"),
    "modality": ("CT", "MRI", "X-ray"),
}
"""Words for the ``{placeholders}`` of :data:`DEFAULT_NONSENSE_TEMPLATES`."""


# Over 60 lines only through its signature and docstring; the body is about 40 lines.
def made_up_questions(
    pool: Sequence[ImageRef] | Sequence[VQASample],
    *,
    templates: Sequence[str] = DEFAULT_NONSENSE_TEMPLATES,
    fillers: Mapping[str, Sequence[str]] = DEFAULT_FILLERS,
    n: int | None = None,
    seed: int = 0,
    answer: str = "I do not know",
    dataset: str = "made_up",
    split: str = "test",
) -> list[VQASample]:
    """Build nonsense questions from templates, each paired with an image from ``pool``.

    Template ``k`` of sample ``i`` is ``templates[i % len(templates)]``; its ``{placeholders}``
    are filled with words drawn from ``fillers`` (seeded, keyed on the sample id). Samples
    get ids ``f"{dataset}:{split}:{i}"``, the reference ``answer``, and the metadata
    ``nonsense=True``, ``template`` (the index) and ``transforms="made_up_questions(seed=...)"``.

    Args:
        pool: Images (or samples whose images are used) to pair the questions with.
        templates: Question templates with ``{name}`` placeholders.
        fillers: Words for each placeholder name.
        n: How many questions (default: one per template).
        seed: Seed of the word and image draws.
        answer: The reference answer (an abstention).
        dataset: Dataset name of the new samples.
        split: Split name of the new samples.

    Returns:
        ``n`` new samples.

    Raises:
        TransformError: A template uses a placeholder that ``fillers`` lacks, or the pool
            has no image.

    >>> qs = made_up_questions([ImageRef(data=b"x", name="x.png")], n=2, seed=1)
    >>> len(qs), qs[0].id, qs[0].metadata["nonsense"]
    (2, 'made_up:test:0', True)
    """
    from medvqa.data import image_pool, pair_with_images

    refs = image_pool(pool, who="made_up_questions")
    if not refs:
        raise TransformError("made_up_questions: the pool has no image")
    if not templates:
        raise TransformError("made_up_questions: give at least one template")
    count = len(templates) if n is None else n
    if count < 0:
        raise ValueError(f"made_up_questions: n must be >= 0, got {n}")
    formatter = string.Formatter()
    tag = f"made_up_questions(seed={seed!r})"
    out = []
    for i in range(count):
        template = templates[i % len(templates)]
        sample_id = f"{dataset}:{split}:{i}"
        rng = _rng(seed, "template", sample_id)
        values: dict[str, str] = {}
        for _, fname, _, _ in formatter.parse(template):
            if fname is None or fname in values:
                continue
            words = fillers.get(fname)
            if not words:
                raise TransformError(
                    f"made_up_questions: template {i % len(templates)} uses {{{fname}}}, which fillers "
                    f"lacks (fillers has: {sorted(fillers)})"
                )
            values[fname] = words[rng.randrange(len(words))]
        out.append(
            VQASample(
                id=sample_id,
                question=template.format(**values),
                answer=answer,
                answer_type="open",
                answer_type_source="annotation",
                dataset=dataset,
                split=split,
                metadata={"nonsense": True, "template": i % len(templates), TRANSFORMS_KEY: tag},
            )
        )
    return pair_with_images(out, refs, seed=seed)
