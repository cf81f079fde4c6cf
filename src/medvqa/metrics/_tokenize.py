"""Tokenizers the scoring profiles need, without NLTK.

:func:`treebank_tokenize` reproduces ``nltk.tokenize.NLTKWordTokenizer().tokenize`` (NLTK
3.9/3.10, the improved Treebank tokenizer that ``nltk.word_tokenize`` applies to each
sentence), rule for rule, with Python's ``re``. Parity is tested against NLTK on many
generated strings.
"""

from __future__ import annotations

import functools
import re

__all__ = ["treebank_tokenize", "whitespace_tokenize"]

_STARTING_QUOTES = [
    (re.compile("([«“‘„]|[`]+)", re.U), r" \1 "),
    (re.compile(r"^\""), r"``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
    (re.compile(r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", re.U), r"\1 "),
]

_ENDING_QUOTES = [
    (re.compile("([»”’])", re.U), r" \1 "),
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]

# NLTK writes the first pattern's trailing class with a possessive ``*+``; for this class
# (which contains the space) a greedy ``*`` matches the same strings, and works on Python 3.10.
_PUNCTUATION = [
    (re.compile(r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$", re.U), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}", re.U), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r"[\u2012-\u2015]", re.U), r" \g<0> "),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[*]", re.U), r" \g<0> "),
]

_PARENS_BRACKETS = (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
_DOUBLE_DASHES = (re.compile(r"--"), r" -- ")

_CONTRACTIONS2 = [
    re.compile(p)
    for p in (
        r"(?i)\b(can)(?#X)(not)\b",
        r"(?i)\b(d)(?#X)('ye)\b",
        r"(?i)\b(gim)(?#X)(me)\b",
        r"(?i)\b(gon)(?#X)(na)\b",
        r"(?i)\b(got)(?#X)(ta)\b",
        r"(?i)\b(lem)(?#X)(me)\b",
        r"(?i)\b(more)(?#X)('n)\b",
        r"(?i)\b(wan)(?#X)(na)(?=\s)",
    )
]
_CONTRACTIONS3 = [re.compile(p) for p in (r"(?i) ('t)(?#X)(is)\b", r"(?i) ('t)(?#X)(was)\b")]


_PLAIN_RE = re.compile(r"[A-Za-z0-9 ,]*[A-Za-z0-9,]")
_CONTRACTION_WORDS = frozenset({"cannot", "gimme", "gonna", "gotta", "lemme", "wanna"})
_COMMA_BEFORE_NON_DIGIT, _COMMA_AT_END = (_PUNCTUATION[1][0], _PUNCTUATION[2][0])


def _plain_tokens(text: str) -> tuple[str, ...] | None:
    """The tokens of a plain text (ASCII letters, digits, spaces, commas, an optional final period), else ``None``.

    On such a text no Treebank rule applies but the final-period split, the two comma rules
    (a comma before anything but a digit, or at the end, becomes its own token: ``no,`` and
    ``no, there`` split, ``1,000`` does not) and the MacIntyre contractions (``cannot``,
    ``gonna``, ...), which send the text to the full rules. The comma rules are NLTK's own
    expressions, applied to the text without its final period (where they give the same
    tokens as on the whole text).

    >>> _plain_tokens("No, there are 1,000."), _plain_tokens("gonna, go"), _plain_tokens("it's")
    (('No', ',', 'there', 'are', '1,000', '.'), None, None)
    """
    body = text.rstrip(" ")
    period = body.endswith(".")
    if period:
        body = body[:-1]
    if not _PLAIN_RE.fullmatch(body):
        return None
    if "," in body:
        body = _COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", body)
        body = _COMMA_AT_END.sub(r" \1 ", body)
        if not _CONTRACTION_WORDS.isdisjoint(body.lower().replace(",", " ").split()):
            return None
    elif not _CONTRACTION_WORDS.isdisjoint(body.lower().split()):
        return None
    words = body.split()
    return (*words, ".") if period else tuple(words)


@functools.lru_cache(maxsize=65536)
def treebank_tokenize(text: str) -> tuple[str, ...]:
    """Split ``text`` into Treebank word tokens, as ``NLTKWordTokenizer().tokenize`` does.

    Punctuation is kept as tokens; a final period is split off (``"no."`` gives ``no`` and
    ``.``); contractions are split (``"don't"`` gives ``do`` and ``n't``).

    Args:
        text: Any string (one sentence, as the paper's metric passes it).

    Returns:
        The tokens, as a tuple.

    >>> treebank_tokenize("no.")
    ('no', '.')
    >>> treebank_tokenize("Isn't it 3.5 cm (left)?")
    ('Is', "n't", 'it', '3.5', 'cm', '(', 'left', ')', '?')
    """
    plain = _plain_tokens(text)
    if plain is not None:
        return plain
    return _treebank_rules(text)


# The characters one of which each rule needs in order to match: a rule whose characters are
# absent leaves the text as it is, so it is skipped. The rules of one block only add spaces,
# so the characters present at the start of the block decide for all of its rules.
_STARTING_QUOTE_CHARS = "«“‘„`\"'"
_PUNCTUATION_CHARS = (".", ":,", ":,", ".", ";@#$%&", "\u2012\u2013\u2014\u2015", ".", "?!", "'", "*")
_PARENS_CHARS = "][(){}<>"
_CONTRACTION_LITERALS = ("cannot", "d'ye", "gimme", "gonna", "gotta", "lemme", "more'n", "wanna")


def _has_any(text: str, chars: str) -> bool:
    return any(c in text for c in chars)


def _treebank_rules(text: str) -> tuple[str, ...]:
    """NLTK's rules, one regular expression after another (every text gives the same tokens here)."""
    if _has_any(text, _STARTING_QUOTE_CHARS):
        for regexp, substitution in _STARTING_QUOTES:
            text = regexp.sub(substitution, text)
    present = [_has_any(text, chars) for chars in _PUNCTUATION_CHARS]
    for (regexp, substitution), needed in zip(_PUNCTUATION, present):
        if needed:
            text = regexp.sub(substitution, text)
    if _has_any(text, _PARENS_CHARS):
        regexp, substitution = _PARENS_BRACKETS
        text = regexp.sub(substitution, text)
    if "--" in text:
        regexp, substitution = _DOUBLE_DASHES
        text = regexp.sub(substitution, text)
    text = " " + text + " "
    for i, (regexp, substitution) in enumerate(_ENDING_QUOTES):
        # The first three need one of their quote characters; the third makes the apostrophes
        # that the last two need; whitespace is always collapsed.
        if i == 3 or _has_any(text, ("»”’", "'", '"', "", "'", "'")[i]):
            text = regexp.sub(substitution, text)
    # Case-insensitive: on non-ASCII text a few other letters match (the Kelvin sign matches k).
    low = text.lower() if text.isascii() else None
    for regexp, literal in zip(_CONTRACTIONS2, _CONTRACTION_LITERALS):
        if low is None or literal in low:
            text = regexp.sub(r" \1 \2 ", text)
    if "'" in text:
        for regexp in _CONTRACTIONS3:
            text = regexp.sub(r" \1 \2 ", text)
    return tuple(text.split())


@functools.lru_cache(maxsize=65536)
def whitespace_tokenize(text: str) -> tuple[str, ...]:
    """Python's ``str.split()``: the tokens of the ``llava_med`` and ``multimedeval`` profiles.

    >>> whitespace_tokenize(" left  lung ")
    ('left', 'lung')
    """
    return tuple(text.split())
