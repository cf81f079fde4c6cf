"""Hypothesis strategies shared by the property tests, in one place.

Each block below belongs to one area of the library; property tests import from here.
"""

from __future__ import annotations

from hypothesis import strategies as st

# --- text ------------------------------------------------------------------------------------

#: Arbitrary Unicode text, including control characters and surrogate-free exotic code points.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


# --- transforms (ablations) ------------------------------------------------------------------


@st.composite
def image_sample_lists(draw: st.DrawFn, *, max_size: int = 14, max_contents: int = 6) -> list:  # type: ignore[type-arg]
    """Lists of samples with unique ids whose images are drawn from a few contents.

    Contents repeat (several questions about one image) and may be stored under different
    names, so that only a content comparison can tell them apart; each sample has a
    ``modality`` metadata field drawn from two values.
    """
    from medvqa.records import ImageRef, VQASample

    n = draw(st.integers(min_value=0, max_value=max_size))
    contents = draw(st.lists(st.integers(0, max_contents - 1), min_size=n, max_size=n))
    ids = draw(
        st.lists(st.text("abcdefgh0123456789", min_size=1, max_size=6), min_size=n, max_size=n, unique=True)
    )
    modalities = draw(st.lists(st.sampled_from(["CT", "MRI"]), min_size=n, max_size=n))
    samples = []
    for k, (sample_id, content, modality) in enumerate(zip(ids, contents, modalities)):
        samples.append(
            VQASample(
                id=sample_id,
                question=f"question {k}?",
                answer="yes",
                answer_type="closed",
                answer_type_source="annotation",
                dataset="demo",
                split="test",
                image=ImageRef(data=b"content-%d" % content, name=f"file-{k}.png"),
                metadata={"modality": modality},
            )
        )
    return samples


# --- data (medvqa.data): answers, questions and release rows ---------------------------------

#: "yes"/"no" written the ways releases write them: any case, surrounding whitespace,
#: trailing punctuation. Every value is a closed answer.
yes_no_variants = st.builds(
    lambda word, casing, left, right, punct: (
        left + "".join(c.upper() if up else c.lower() for c, up in zip(word, casing)) + punct + right
    ),
    st.sampled_from(["yes", "no"]),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.sampled_from(["", " ", "  ", "\t", "\n"]),
    st.sampled_from(["", " ", "\n", " \t"]),
    st.sampled_from(["", ".", "!", "?", "...", ",", ";", ":", ".!"]),
)

#: Short printable questions (what release rows hold).
data_questions = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda s: s.strip() != "")

#: Release rows for imagefolder fixtures: (image index 0..2, question, answer), possibly repeated.
data_rows = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2),
        st.sampled_from(["Is there a bleed?", "What organ is this?", "Is it normal?", "how many ribs?"]),
        st.sampled_from(["yes", "No", "liver", "2"]),
    ),
    min_size=1,
    max_size=8,
)


# --- scoring: answers and metrics (medvqa.answers, medvqa.metrics) -----------------------------

#: Words that look like short medical VQA answers, including yes/no and their traps.
answer_words = st.sampled_from(
    [
        "yes", "no", "not", "none", "normal", "abnormal", "left", "right", "lung", "liver",
        "the", "a", "an", "ct", "mri", "x-ray", "two", "3", "3.5", "1,000", "cm", "fracture",
        "isn't", "don't", "cannot", "yeah", "nope", "(left)", "lobe", "upper", "effusion",
    ]
)  # fmt: skip

#: Punctuation and spacing that answers and model replies carry.
answer_punct = st.sampled_from(
    [".", ",", "?", "!", ";", ":", "'", '"', "(", ")", "-", "/", " ", "  ", "\n", "..."]
)

#: A short answer-like string: words joined by spaces, sometimes with punctuation and case changes.
answer_text = st.lists(st.one_of(answer_words, answer_words.map(str.upper), answer_punct), max_size=8).map(
    lambda parts: " ".join(parts)
)

#: Text close to what NLTK's Treebank tokenizer meets in answers (ASCII, quotes, dashes, accents).
treebank_text = st.lists(
    st.sampled_from(
        [
            *"abcdeXYZ nt'sldm.,;:!?()[]{}<>\"`-$%&@#*/0123456789\t\n",
            *("--", "...", "n't", "'ll", "cannot", "gonna", "“", "”", "‘", "’", "«", "»", "–", "—", "é", "ü"),
        ]
    ),
    max_size=30,
).map("".join)

#: A model reply: an answer possibly wrapped in role labels, cues, tags or follow-up turns.
model_reply = st.one_of(
    answer_text,
    st.tuples(
        st.sampled_from(["", "Assistant: ", "assistant:", "Human: q? Assistant: ", "User: q\nAssistant: "]),
        st.sampled_from(["", "Answer: ", "The answer is ", "<answer>", "\\boxed{", "Final answer: "]),
        answer_text,
        st.sampled_from(["", "</answer>", "}", ". More text follows.", "\nQuestion: next?", "\nHuman: hi"]),
    ).map("".join),
    any_text,
)


@st.composite
def prediction_lists(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> list:
    """Lists of :class:`medvqa.records.Prediction` with unique ids and non-empty references."""
    from medvqa.records import Prediction

    n = draw(st.integers(min_size, max_size))
    out = []
    for i in range(n):
        ref = draw(answer_text.filter(lambda s: s.strip() != ""))
        pred = draw(st.one_of(answer_text, model_reply, st.just(ref)))
        kind = draw(st.sampled_from(["closed", "open"]))
        meta = draw(
            st.sampled_from([{}, {"modality": "CT"}, {"modality": "MRI"}, {"answer_type_source": "inferred"}])
        )
        out.append(
            Prediction(
                id=f"item-{i}", question="q", reference=ref, prediction=pred, answer_type=kind, metadata=meta
            )
        )
    return out


# --- chat and collators (medvqa.chat, medvqa.collate) ---------------------------------------------

#: Question/answer/instruction text: arbitrary Unicode without Idefics2's reserved control tokens.
chat_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda t: all(tok not in t for tok in ("<image>", "<fake_token_around_image>", "<end_of_utterance>"))
)


@st.composite
def chat_samples(draw: st.DrawFn) -> object:
    """A VQA or caption sample with arbitrary text, with or without an image reference."""
    from medvqa.records import ImageRef, VQASample

    answer = draw(chat_text)
    return VQASample(
        id=draw(st.text("abcdefghij0123456789:", min_size=1, max_size=12)),
        question=draw(chat_text),
        answer=answer,
        answer_type=draw(st.sampled_from(["closed", "open"])),
        answer_type_source="annotation",
        dataset="demo",
        split="train",
        task=draw(st.sampled_from(["vqa", "caption"])),
        image=draw(st.sampled_from([None, ImageRef(path="x.png")])),
    )


# --- training: stage configs -------------------------------------------------------------------

#: Valid ``medvqa.training.StageConfig`` keyword arguments (a random mix of every field's domain).
stage_config_kwargs = st.fixed_dictionaries(
    {
        "name": st.text("abcdefghij_0123456789", min_size=1, max_size=12),
        "dataset": st.sampled_from(["vqa_rad", "slake", "path_vqa", "roco", "med_halt"]),
        "quantization": st.sampled_from(["nf4", "fp4", "int8", "none"]),
        "prompt": st.sampled_from(["paper", "caption", "expert"]),
        "mask": st.sampled_from(["answer", "paper"]),
        "epochs": st.floats(min_value=0.01, max_value=100, allow_nan=False),
        "learning_rate": st.floats(min_value=1e-8, max_value=1.0, allow_nan=False),
        "batch_size": st.integers(1, 64),
        "grad_accum": st.integers(1, 64),
        "warmup_steps": st.integers(0, 1000),
        "weight_decay": st.floats(min_value=0, max_value=1, allow_nan=False),
        "precision": st.sampled_from(["auto", "fp32", "fp16", "bf16"]),
        "seed": st.integers(0, 2**31 - 1),
        "subset_size": st.none() | st.integers(0, 100_000),
        "lora_dropout": st.floats(min_value=0, max_value=0.9, allow_nan=False),
        "holdout_fraction": st.sampled_from([0.0, 0.05, 0.1, 0.25]),
        "instruction": st.none() | st.text(min_size=1, max_size=40).filter(lambda t: t.strip() != ""),
        "data_options": st.dictionaries(
            st.text("abc", min_size=1, max_size=3),
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        ),
    }
)


# --- JSON Lines (medvqa._io) -----------------------------------------------------------------

#: Text that favours the characters some reader or other treats as a line break.
line_break_text = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    ),
    max_size=60,
)

#: JSON objects of text keys and values drawn from arbitrary Unicode (lone surrogates excluded).
jsonl_records = st.dictionaries(
    st.one_of(any_text, line_break_text),
    st.one_of(any_text, line_break_text, st.integers(), st.booleans(), st.none()),
    max_size=4,
)
