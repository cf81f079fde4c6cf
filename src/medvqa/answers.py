"""Answer extraction and normalization: pure, total functions on strings.

Extraction takes a model's raw reply and returns the answer span, together with the name of
the rule that produced it (:class:`ExtractedAnswer`). Normalization maps an answer to the
canonical form a scoring profile compares. Every function here accepts any string and never
raises; the ones documented as idempotent satisfy ``f(f(s)) == f(s)``.

This module is part of the light core (standard library only).

>>> extract_answer("Assistant: The answer is yes.\\nQuestion: is it big?")
ExtractedAnswer(answer='yes', rule='role_prefix+answer_cue')
>>> extract_answer("Answer: No. Question: anything else?", style="paper").answer
'no.'
>>> normalize_strict("  The TWO lesions!  ")
'2 lesions'
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ExtractedAnswer",
    "ExtractionStyle",
    "extract_answer",
    "extract_paper_answer",
    "extract_strict_answer",
    "normalize_lmms_eval",
    "normalize_multimedeval",
    "normalize_strict",
    "normalize_vqav2",
]

ExtractionStyle = Literal["strict", "paper"]
"""``strict``: the general extractor (the default); ``paper``: the Med-Idefics paper's rule."""


@dataclass(frozen=True)
class ExtractedAnswer:
    """The answer found in a model reply and the rule that found it.

    Attributes:
        answer: The extracted answer text (may be empty when the reply is empty).
        rule: The rule that fired. Strict rules: ``empty``, ``answer_tag``, ``boxed``,
            ``answer_cue``, ``first_line``, ``first_sentence``, ``verbatim``, each possibly
            prefixed by ``role_prefix+`` when a role label such as ``assistant:`` was
            removed first. Paper rules: ``paper_answer_cue`` (text after ``answer:``) or
            ``paper_verbatim``.
    """

    answer: str
    rule: str


# --------------------------------------------------------------------------------------------
# tables (copied into medvqa/metrics/_tables; see the README there for their sources)


@functools.cache
def _table(name: str) -> Mapping[str, Any]:
    text = (Path(__file__).parent / "metrics" / "_tables" / name).read_text(encoding="utf-8")
    data: Mapping[str, Any] = json.loads(text)
    return data


# --------------------------------------------------------------------------------------------
# paper extraction


def extract_paper_answer(text: str) -> ExtractedAnswer:
    """The Med-Idefics paper's extractor, exactly as its evaluation ran.

    The reply is lowercased; if it contains ``answer:``, everything after the first
    ``answer:`` is kept, cut at the first ``question:`` that follows; then every
    ``assistant:`` is deleted and surrounding whitespace stripped. Punctuation is kept (so
    ``"No."`` stays ``"no."``, which the paper's F1 and BLEU then penalise).

    Args:
        text: The raw model reply.

    Returns:
        The extracted answer (lowercase) and the rule (``paper_answer_cue`` or
        ``paper_verbatim``).

    >>> extract_paper_answer("Answer: Yes, there is. Question: where?")
    ExtractedAnswer(answer='yes, there is.', rule='paper_answer_cue')
    >>> extract_paper_answer(" Assistant: Left lung ").answer
    'left lung'
    """
    low = text.lower()
    rule = "paper_verbatim"
    if "answer:" in low:
        low = low.split("answer:", 1)[1]
        low = low.split("question:", 1)[0]
        rule = "paper_answer_cue"
    return ExtractedAnswer(low.replace("assistant:", "").strip(), rule)


# --------------------------------------------------------------------------------------------
# strict extraction

_ROLE_RE = re.compile(r"^\s*(?:assistant|human|user|gpt|system|model|bot)\s*:\s*", re.IGNORECASE)
_ASSISTANT_RE = re.compile(r"\b(?:assistant|gpt|model|bot)\s*:\s*", re.IGNORECASE)
_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_BOXED_RE = re.compile(r"\\boxed\s*\{")
_CUE_RE = re.compile(
    r"(?:\bthe\s+(?:final\s+|correct\s+)?answer\s+is\b\s*:?|\b(?:final\s+)?answer\s*:)\s*",
    re.IGNORECASE,
)
_STOP_RE = re.compile(r"\n|\b(?:question|human|user|assistant)\s*:", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s)")


def _boxed_content(text: str) -> str | None:
    match = _BOXED_RE.search(text)
    if match is None:
        return None
    depth = 1
    start = match.end()
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


def _strict_pass(text: str) -> tuple[str, str]:
    """One extraction step; the result is never longer than ``text``."""
    prefix = ""
    stripped = text.strip()
    if not stripped:
        return "", "empty"
    # A pattern whose literal characters are absent cannot match: those searches are skipped
    # (on ASCII text only for the case-insensitive "answer", which non-ASCII letters can match).
    colon = ":" in stripped
    role = _ROLE_RE.match(stripped) if colon else None
    if role is not None:
        label = role.group(0).strip().rstrip(":").strip().lower()
        stripped = stripped[role.end() :]
        prefix = "role_prefix+"
        if label in ("human", "user", "system"):
            # The reply opens with an echoed prompt turn: the answer follows the assistant's label.
            reply = _ASSISTANT_RE.search(stripped)
            if reply is not None:
                stripped = stripped[reply.end() :].strip()
    may_cue = not stripped.isascii() or "answer" in stripped.lower()
    tag = _TAG_RE.search(stripped) if may_cue and "<" in stripped else None
    if tag is not None:
        return tag.group(1).strip(), prefix + "answer_tag"
    boxed = _boxed_content(stripped) if "\\boxed" in stripped else None
    if boxed is not None:
        return boxed.strip(), prefix + "boxed"
    cue = _CUE_RE.search(stripped) if may_cue else None
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
    stop = _STOP_RE.search(stripped) if colon or "\n" in stripped else None
    if stop is not None and stop.start() > 0:
        first = stripped[: stop.start()].strip()
        if first:
            return first, prefix + "first_line"
    end = _SENTENCE_END_RE.search(stripped)
    if end is not None and stripped[end.end() :].strip():
        return stripped[: end.start() + 1].strip(), prefix + "first_sentence"
    return stripped, prefix + "verbatim"


def extract_strict_answer(text: str) -> ExtractedAnswer:
    """The general extractor used by the ``strict`` profile.

    Rules, tried in this order on the stripped reply after removing one leading role label
    (``assistant:``, ``human:``, ``user:``, ``gpt:``, ``system:``, ``model:``, ``bot:``; when
    the reply opens with a ``human:``/``user:``/``system:`` turn followed by an assistant
    label, the text after that label):

    1. ``<answer>...</answer>`` tags: the tagged text (``answer_tag``);
    2. ``\\boxed{...}`` (braces balanced): its content (``boxed``);
    3. an answer cue, ``the answer is``, ``final answer:`` or ``answer:``: the text after
       the first cue, up to the end of its line, a following role label or
       ``question:``, and the end of its sentence (``answer_cue``);
    4. a reply of several lines: its first non-empty line (``first_line``);
    5. a reply of several sentences: its first sentence (``first_sentence``);
    6. otherwise the stripped reply itself (``verbatim``).

    The steps repeat on their own output until nothing changes, so the extractor is
    idempotent: ``extract_strict_answer(a.answer).answer == a.answer``. The recorded rule is
    the one of the first step.

    Args:
        text: The raw model reply.

    Returns:
        The extracted answer (case preserved) and the rule that fired.

    >>> extract_strict_answer("<answer> Left kidney </answer> because ...")
    ExtractedAnswer(answer='Left kidney', rule='answer_tag')
    >>> extract_strict_answer("The final answer is \\\\boxed{yes}").rule
    'boxed'
    >>> extract_strict_answer("Yes. The lesion is in the liver.")
    ExtractedAnswer(answer='Yes.', rule='first_sentence')
    >>> extract_strict_answer("assistant: no")
    ExtractedAnswer(answer='no', rule='role_prefix+verbatim')
    """
    answer, rule = _strict_pass(text)
    if rule in ("verbatim", "empty"):
        # No rule fired on the stripped reply, which is the answer: another pass changes nothing.
        return ExtractedAnswer(answer, rule)
    current = answer
    while True:
        nxt, _ = _strict_pass(current)
        if nxt == current:
            break
        current = nxt
    return ExtractedAnswer(current, rule)


def extract_answer(text: str, *, style: ExtractionStyle = "strict") -> ExtractedAnswer:
    """Extract the answer from a model reply.

    Args:
        text: The raw model reply (new tokens only).
        style: ``"strict"`` (default): :func:`extract_strict_answer`; ``"paper"``:
            :func:`extract_paper_answer`, the Med-Idefics paper's rule (which also lowercases).

    Returns:
        The answer and the name of the rule that fired.

    Raises:
        ValueError: ``style`` is not ``"strict"`` or ``"paper"``.

    >>> extract_answer("Answer: Left. Question: and?").answer
    'Left'
    >>> extract_answer("Answer: Left. Question: and?", style="paper").answer
    'left.'
    """
    if style == "strict":
        return extract_strict_answer(text)
    if style == "paper":
        return extract_paper_answer(text)
    raise ValueError(f"style must be 'strict' or 'paper', got {style!r}")


# --------------------------------------------------------------------------------------------
# VQA v2 / LLaVA-Med normalization (also MultiMedEval's cleaning)

_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The upstream pattern, look-behind mistyped as a look-ahead: "(?!<=\d)" never blocks.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")


@functools.cache
def _vqav2_tables() -> tuple[tuple[str, ...], Mapping[str, str], frozenset[str], Mapping[str, str]]:
    t = _table("vqav2_normalization.json")
    return (
        tuple(t["punctuation"]),
        dict(t["number_words"]),
        frozenset(t["articles"]),
        dict(t["contractions"]),
    )


@functools.cache
def _vqav2_punct_set() -> frozenset[str]:
    return frozenset(_vqav2_tables()[0])


@functools.lru_cache(maxsize=262144)  # two profiles normalize the same predictions
def normalize_vqav2(text: str) -> str:
    """LLaVA-Med v1.0's ``normalize_word`` (VQA v2 rules), quirks included.

    Steps (the input is lowercased by the caller in the profiles that use it):

    1. For each punctuation character ``p`` of the table, in order: if the *original* string
       contains ``p + " "`` or ``" " + p``, or a digit-comma-digit anywhere, delete every
       ``p``; otherwise replace every ``p`` by a space.
    2. Delete periods not followed by a digit (at most 32 of them: the upstream code passes
       ``re.UNICODE`` where ``re.sub`` expects its ``count``).
    3. Lowercase, split on whitespace, map number words (``none`` becomes ``0``), drop
       articles, map contractions (capitalised keys never match).
    4. Join with single spaces and delete every remaining comma.

    Not idempotent in general (the upstream metric functions apply it twice, and so do the
    ``llava_med`` profile's recall, precision, F1 and "exact match").

    Args:
        text: Any string.

    Returns:
        The normalized string.

    >>> normalize_vqav2("the left-lung, none.")
    'left lung 0'
    >>> normalize_vqav2("1,000 cells")
    '1000 cells'
    """
    punct, numbers, articles, contractions = _vqav2_tables()
    original = text
    out = text
    # The table's characters are single and never a space or a period: replacing one neither
    # adds nor removes another, so only those present in the text need a pass.
    present = _vqav2_punct_set().intersection(original)
    if present:
        has_comma_number = _COMMA_STRIP.search(original) is not None
        for p in punct:
            if p not in present:
                continue
            if (p + " " in original or " " + p in original) or has_comma_number:
                out = out.replace(p, "")
            else:
                out = out.replace(p, " ")
    if "." in out:
        out = _PERIOD_STRIP.sub("", out, 32)
    mapped = (numbers.get(word, word) for word in out.lower().split())
    words = [contractions.get(w, w) for w in mapped if w not in articles]
    return " ".join(words).replace(",", "")


@functools.cache
def _vqav2_unstable_mark() -> str | None:
    """A character found in every contraction value that a second pass would change, or ``None``.

    A word that the first pass leaves behind is a fixed point of the word maps, except a
    contraction value that is itself a key, an article, a number word or not lowercase
    (``I'm``, ``let's``): all of those hold an apostrophe in the table.
    """
    _, numbers, articles, contractions = _vqav2_tables()
    unstable = [
        v
        for v in contractions.values()
        if v != v.lower() or v in articles or numbers.get(v, v) != v or contractions.get(v, v) != v
    ]
    return "'" if all("'" in v for v in unstable) else None


def _normalize_vqav2_again(normalized: str) -> str:
    """``normalize_vqav2(normalized)`` for a string that ``normalize_vqav2`` returned.

    Such a string is its own normalization when it holds no table punctuation, no period and
    no word that a second pass maps again (see :func:`_vqav2_unstable_mark`): its words are
    lowercase, single-spaced, and no article, number word or contraction key. Otherwise the
    rules run again.
    """
    mark = _vqav2_unstable_mark()
    if (
        mark is not None
        and mark not in normalized
        and "." not in normalized
        and _vqav2_punct_set().isdisjoint(normalized)
    ):
        return normalized
    return normalize_vqav2(normalized)


def normalize_multimedeval(text: str) -> str:
    """MultiMedEval's VQA cleaning: lowercase, then :func:`normalize_vqav2`.

    >>> normalize_multimedeval("No, there is NONE.")
    'no there is 0'
    """
    return normalize_vqav2(text.lower())


# --------------------------------------------------------------------------------------------
# lmms-eval SLAKE normalization

_PAREN_RE = re.compile(r"\([^)]*\)")
_FULLWIDTH_PAREN_RE = re.compile(r"（[^）]*）")


@functools.cache
def _slake_tables() -> tuple[frozenset[str], frozenset[str], dict[int, str], frozenset[str]]:
    t = _table("slake_normalization.json")
    chars = set(t["ascii_punctuation"]) | set(t["zh_punctuation"])
    yes = frozenset(t["en_yes"]) | frozenset(t["zh_yes"])
    no = frozenset(t["en_no"]) | frozenset(t["zh_no"])
    return yes, no, {ord(c): " " for c in chars}, frozenset(t["xray_aliases"])


@functools.lru_cache(maxsize=65536)
def normalize_lmms_eval(text: str) -> str:
    """lmms-eval's SLAKE answer normalization.

    Strip, lowercase, replace every ``( … )`` group and then every full-width ``（ … ）``
    group by a space (one regex pass each, up to the first closing parenthesis),
    replace ASCII and listed Chinese punctuation by spaces, collapse whitespace; then
    ``x ray``/``xray`` becomes ``xray`` and whole-string yes/no synonyms (English and
    Chinese) become ``yes``/``no``.

    Args:
        text: Any string.

    Returns:
        The normalized string.

    >>> normalize_lmms_eval(" X-Ray (chest) ")
    'xray'
    >>> normalize_lmms_eval("Yeah!"), normalize_lmms_eval("没有")
    ('yes', 'no')
    """
    yes, no, punct_map, xray = _slake_tables()
    s = text.strip().lower()
    # One pass each, as upstream: "(a (b) c)" loses "(a (b)" and keeps " c)".
    s = _PAREN_RE.sub(" ", s)
    s = _FULLWIDTH_PAREN_RE.sub(" ", s)
    s = s.translate(punct_map)
    s = " ".join(s.split())
    if s in xray:
        s = "xray"
    if s in yes:
        return "yes"
    if s in no:
        return "no"
    return s


# --------------------------------------------------------------------------------------------
# strict normalization

_STRICT_ARTICLES = frozenset({"a", "an", "the"})
_STRICT_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20",
}  # fmt: skip
_STRICT_YES = frozenset({"yes", "yeah", "yep", "true"})
_STRICT_NO = frozenset({"no", "nope", "false"})


def _is_digit(ch: str) -> bool:
    return ch.isdecimal() and ch.isascii()


def _strict_char(ch: str) -> str:
    if ch in "'’":
        return ""
    cat = unicodedata.category(ch)
    if cat[0] == "P" or cat in ("Cc", "Cf", "Zl", "Zp") or ch in "`^~|+<>=$":
        return " "
    return ch


# ASCII text takes a shortcut with the same result: NFKC and casefold are lower(), a "." or ","
# not between two digits becomes a space, every other character maps as _strict_char says.
_ASCII_TABLE = str.maketrans({chr(c): _strict_char(chr(c)) for c in range(128) if chr(c) not in ".,"})
_LONE_SEPARATOR = re.compile(r"(?<![0-9])[.,]|[.,](?![0-9])")


def _strict_chars(text: str) -> str:
    if text.isascii():
        return _LONE_SEPARATOR.sub(" ", text.lower()).translate(_ASCII_TABLE)
    return _strict_chars_general(text)


def _strict_chars_general(text: str) -> str:
    s = unicodedata.normalize("NFKC", text)
    s = unicodedata.normalize("NFKC", s.casefold())
    chars: list[str] = []
    n = len(s)
    for i, ch in enumerate(s):
        cat = unicodedata.category(ch)
        if ch in "'’":
            continue
        if cat[0] == "P" or cat in ("Cc", "Cf", "Zl", "Zp") or ch in "`^~|+<>=$":
            if ch in ".," and 0 < i < n - 1 and _is_digit(s[i - 1]) and _is_digit(s[i + 1]):
                chars.append(ch)
            else:
                chars.append(" ")
        else:
            chars.append(ch)
    return "".join(chars)


def _strict_once(text: str) -> str:
    words = []
    for word in _strict_chars(text).split():
        if word in _STRICT_ARTICLES:
            continue
        words.append(_STRICT_NUMBERS.get(word, word))
    out = " ".join(words)
    if out in _STRICT_YES:
        return "yes"
    if out in _STRICT_NO:
        return "no"
    return out


@functools.lru_cache(maxsize=65536)
def normalize_strict(text: str) -> str:
    """The ``strict`` profile's normalization; idempotent.

    Unicode NFKC, case-folding, apostrophes deleted (``isn't`` → ``isnt``), other
    punctuation (and control characters) replaced by spaces except a ``.`` or ``,`` between
    two digits (``3.5``, ``1,000``), articles dropped,
    spelled-out numbers zero to twenty written as digits, whitespace collapsed, and a
    whole-string yes/no synonym (``yeah``, ``yep``, ``true``; ``nope``, ``false``) folded to
    ``yes``/``no``. ``none``, ``normal`` and ``not`` are left alone.

    Args:
        text: Any string.

    Returns:
        The normalized string; ``normalize_strict(normalize_strict(s)) == normalize_strict(s)``.

    >>> normalize_strict("Yep!"), normalize_strict("3.5 cm."), normalize_strict("An  ECHO")
    ('yes', '3.5 cm', 'echo')
    """
    out = _strict_once(text)
    if text.isascii():
        # One pass is the fixed point: its output is lowercase letters, digits, single spaces
        # and separators between two digits, none of which a second pass changes.
        return out
    # Further passes reach the fixed point (NFKC/case-folding can expose new characters).
    for _ in range(8):
        nxt = _strict_once(out)
        if nxt == out:
            break
        out = nxt
    return out
