"""Model-judged scoring: reproducible, cached and audited.

A *judge* (a language model) is asked, for every open question, whether the model's answer
means the same as the reference. This is MedEvalKit's published protocol (its overall VQA
accuracy uses GPT-4.1's verdict for open questions); here it is reproducible:

* any judge: a local Hugging Face causal LM (:class:`LocalJudge`, text only, needs the
  ``train`` extra) or an OpenAI-compatible endpoint (:class:`EndpointJudge`: vLLM, SGLang,
  TGI or a hosted API), always greedy, with the exact prompt recorded;
* cached: every verdict goes to a readable JSON Lines file keyed by (judge model id and
  revision, prompt version, question, reference, answer) as soon as it is made, so a rerun
  costs nothing and gives the same numbers, a killed run resumes, and several processes may
  share one cache (:class:`~medvqa._judge_cache.JudgeCache`);
* audited: :func:`judge_report` puts the judged accuracy (n, 95% interval) next to the rule
  scores of the same items, gives the agreement with every rule profile (counts and Cohen's
  kappa), the items where they disagree most, every unparseable verdict, and, from a filled
  ``medvqa review`` sheet, the agreement with the expert.

>>> from medvqa.records import Prediction
>>> preds = [Prediction("a", "Which organ?", "liver", "The liver.", "open"),
...          Prediction("b", "Is it normal?", "no", "No.", "closed")]
>>> class Echo:  # a judge that calls an answer right when it contains the reference
...     model_id, revision = "echo", "1"
...     def complete(self, conversations):
...         return ["<judge>0</judge>" if "liver" in c[0]["content"].split("user's answer:")[1]
...                 else "<judge>1</judge>" for c in conversations]
>>> verdicts = judge_predictions(preds, Echo(), cache=None)
>>> [(v.id, v.verdict) for v in verdicts]
[('a', True)]
>>> from medvqa.metrics import evaluate
>>> evaluate(preds, profile=judged_profile(verdicts), n_boot=0)["accuracy"].value
1.0
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medvqa._extras import MissingExtraError, needs_train_extra
from medvqa._judge_cache import JudgeCache, cache_key
from medvqa._judge_report import JudgeAgreement, JudgeReport, judge_report
from medvqa._openai_client import ChatClient, Message
from medvqa.metrics._medevalkit import MedEvalKitProfile, medevalkit_pre_extract
from medvqa.records import Prediction

__all__ = [
    "JUDGE_PROMPT_VERSION",
    "EndpointJudge",
    "Judge",
    "JudgeAgreement",
    "JudgeReport",
    "JudgeVerdict",
    "LocalJudge",
    "judge_from_spec",
    "judge_messages",
    "judge_predictions",
    "judge_report",
    "judged_profile",
    "parse_verdict",
]

JUDGE_PROMPT_VERSION = "medevalkit-judge-v1"
"""Version of :func:`judge_messages`; part of every cache key (a new wording gets a new version)."""

_PROMPT = """\
Decide whether the user's answer to a medical question is correct, given the question and \
the standard answer. An answer that expresses a similar meaning to the standard answer, or \
another valid interpretation of it, counts as correct.

The question is: {question}

The standard answer: {reference}

The user's answer: {answer}

Answer strictly in this format, where 0 means correct and 1 means incorrect:
<think>{{one short reasoning step}}</think>
<judge>{{0/1}}</judge>

Example:
<think>The standard answer is right frontal lobe and the user's answer is right frontal lobe; \
they mean the same, so it is correct.</think>
<judge>0</judge>"""


def judge_messages(question: str, reference: str, answer: str) -> list[dict[str, Any]]:
    """The judge prompt: one user message (MedEvalKit's protocol, in medvqa's wording).

    The reply format is ``<think>...</think><judge>0/1</judge>`` where **0 means correct**,
    as in MedEvalKit's ``get_compare_messages``.

    >>> m = judge_messages("Which organ?", "liver", "the liver")
    >>> m[0]["role"], "The user's answer: the liver" in m[0]["content"]
    ('user', True)
    """
    text = _PROMPT.format(question=question, reference=reference, answer=answer)
    return [{"role": "user", "content": text}]


_JUDGE_TAG = re.compile(r"<judge>(.*?)</judge>", re.DOTALL)


def parse_verdict(reply: str) -> bool | None:
    """``True`` (correct), ``False`` (incorrect) or ``None`` (unparseable) from a judge reply.

    The text between ``<judge>`` tags (all spans joined, as MedEvalKit's ``extract``), or the
    whole reply when no span closes, stripped: ``0`` is correct and ``1`` incorrect. Anything
    else is unparseable (MedEvalKit counted it incorrect; here it is counted and listed).

    >>> parse_verdict("<think>same</think><judge>0</judge>"), parse_verdict(" 1 "), parse_verdict("maybe")
    (True, False, None)
    """
    spans = _JUDGE_TAG.findall(reply)
    text = " ".join(s for s in spans).strip() if spans else reply.strip()
    if text == "0":
        return True
    if text == "1":
        return False
    return None


class Judge(Protocol):
    """What :func:`judge_predictions` needs from a judge: its identity and greedy replies."""

    @property
    def model_id(self) -> str:
        """The model's name or path (part of the cache key)."""
        ...

    @property
    def revision(self) -> str:
        """The model's revision: hub commit, weights digest or API snapshot (part of the key)."""
        ...

    def complete(self, conversations: Sequence[Sequence[Message]]) -> list[str]:
        """Greedy replies, one per conversation, in order."""
        ...


class EndpointJudge:
    """A judge behind an OpenAI-compatible ``/v1/chat/completions`` endpoint (greedy).

    Args:
        base_url: The server (``http://host:port`` or ``.../v1``).
        model: The model name sent with each request (the cache's model id).
        revision: The model's revision or snapshot (hosted models may change under one name;
            pin it here so the cache key changes with it).
        api_key: Bearer token, if the server needs one.
        max_tokens: Upper bound of each reply.
        max_workers: Requests in flight at once.
        client: A ready :class:`~medvqa._openai_client.ChatClient` (tests), else one is built.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        revision: str = "",
        api_key: str | None = None,
        max_tokens: int = 512,
        max_workers: int = 8,
        client: ChatClient | None = None,
    ) -> None:
        self.model_id = model
        self.revision = revision
        self.max_tokens = max_tokens
        self.client = client or ChatClient(base_url, model, api_key=api_key, max_workers=max_workers)

    def complete(self, conversations: Sequence[Sequence[Message]]) -> list[str]:
        """Greedy replies (temperature 0), in order."""
        replies = self.client.complete_many(conversations, max_tokens=self.max_tokens, temperature=0.0)
        return [r.text for r in replies]


class LocalJudge:
    """A local Hugging Face causal LM as judge (text only; greedy; loaded on first use).

    Needs ``torch`` and ``transformers`` (the ``train`` extra). The prompt goes through the
    tokenizer's chat template when it has one, else it is sent as ``User: ...\\nAssistant:``.

    Args:
        model: A hub id or a local folder.
        revision: The revision to load (hub branch, tag or commit). The cache records it; without
            it, a local folder is recorded by a digest of its config and weight files (names
            and sizes) and a hub model by the commit it resolves to.
        max_new_tokens: Upper bound of each reply.
        batch_size: Prompts generated together (left-padded).
        device: ``cpu``, ``cuda``, ...; default: CUDA when available.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        revision: str | None = None,
        max_new_tokens: int = 512,
        batch_size: int = 8,
        device: str | None = None,
    ) -> None:
        self.model_id = str(model)
        self._revision_arg = revision
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._revision: str | None = None

    @property
    def revision(self) -> str:
        """The model's revision: the given one, a local folder's digest, else the hub commit.

        Only a hub model without an explicit ``revision`` is loaded to find its commit, so a
        rerun served entirely from the cache does not load a local or pinned model.
        """
        if self._revision is None and self._model is None:
            if self._revision_arg:
                return self._revision_arg
            if Path(self.model_id).is_dir():
                return _folder_digest(Path(self.model_id))
        self._load()
        assert self._revision is not None
        return self._revision

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ModuleNotFoundError as exc:
            missing = (exc.name or "torch").split(".")[0]
            raise MissingExtraError.for_module("medvqa.judge.LocalJudge", missing) from exc
        tokenizer = AutoTokenizer.from_pretrained(self.model_id, revision=self._revision_arg)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_id, revision=self._revision_arg)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        model.eval()
        self._model = model
        self._tokenizer = tokenizer
        commit = getattr(model.config, "_commit_hash", None)
        if self._revision_arg or Path(self.model_id).is_dir():
            commit = None  # keep the key that :attr:`revision` gives before loading
        self._revision = self._revision_arg or commit or _folder_digest(Path(self.model_id))

    def _prompt(self, messages: Sequence[Message]) -> str:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return str(tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False))
        turns = [f"{str(m['role']).capitalize()}: {m['content']}" for m in messages]
        return "\n".join(turns) + "\nAssistant:"

    @needs_train_extra
    def complete(self, conversations: Sequence[Sequence[Message]]) -> list[str]:
        """Greedy replies, in order."""
        import torch

        self._load()
        tok, model = self._tokenizer, self._model
        out: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            prompts = [self._prompt(c) for c in conversations[start : start + self.batch_size]]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
        return out


def _folder_digest(folder: Path) -> str:
    if not folder.is_dir():
        return "unknown"
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.name == "config.json":
            h.update(p.read_bytes())
        elif p.suffix in (".safetensors", ".bin"):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return "local-" + h.hexdigest()[:16]


def judge_from_spec(
    spec: str,
    *,
    model: str | None = None,
    revision: str | None = None,
    api_key: str | None = None,
) -> Judge:
    """A judge from a command-line value: an ``http(s)://`` URL or a model id/folder.

    Args:
        spec: The endpoint URL, or a hub id / local folder for :class:`LocalJudge`.
        model: The model name to request from an endpoint (required with a URL).
        revision: The judge's revision (see the judge classes).
        api_key: The endpoint's bearer token.

    Raises:
        ValueError: A URL without ``model``.

    >>> judge_from_spec("http://127.0.0.1:8000/v1", model="qwen").model_id
    'qwen'
    """
    if spec.startswith(("http://", "https://")):
        if not model:
            raise ValueError(f"judge endpoint {spec}: name the model to request (--judge-model NAME)")
        return EndpointJudge(spec, model, revision=revision or "", api_key=api_key)
    return LocalJudge(spec, revision=revision)


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's verdict on one open item.

    Attributes:
        id: The prediction id.
        question: The question as given to the judge.
        reference: The reference as given (lowercased, stripped).
        answer: The answer as given (MedEvalKit's pre-extraction: ``\\boxed{}`` or
            ``<answer>`` content, lowercased, stripped).
        verdict: ``True`` correct, ``False`` incorrect, ``None`` unparseable.
        reply: The judge's raw reply.
        judge_model: The judge's model id.
        judge_revision: The judge's revision.
        prompt_version: :data:`JUDGE_PROMPT_VERSION` at judging time.
        cached: Whether the verdict came from the cache.
    """

    id: str
    question: str
    reference: str
    answer: str
    verdict: bool | None
    reply: str
    judge_model: str
    judge_revision: str
    prompt_version: str = JUDGE_PROMPT_VERSION
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _open_items(
    predictions: Sequence[Prediction], profile: MedEvalKitProfile
) -> list[tuple[Prediction, str, str]]:
    out = []
    for p in predictions:
        truth = p.reference.lower().strip()
        if not profile.is_closed(p, truth):
            out.append((p, truth, medevalkit_pre_extract(p.prediction)[0]))
    return out


# Over 60 lines with its public docstring; the code is 45 lines.
def judge_predictions(
    predictions: Sequence[Prediction],
    judge: Judge,
    *,
    cache: JudgeCache | str | os.PathLike[str] | None,
    batch_size: int = 32,
    profile: MedEvalKitProfile | None = None,
) -> list[JudgeVerdict]:
    """Judge every open item (as the ``medevalkit`` profile decides open), using the cache.

    Verdicts already in the cache are reused; new ones are appended to it batch by batch, so
    an interrupted run resumes where it stopped.

    Args:
        predictions: The predictions.
        judge: A :class:`Judge` (:class:`LocalJudge`, :class:`EndpointJudge`, ...).
        cache: A cache file path, a :class:`~medvqa._judge_cache.JudgeCache`, or ``None``
            (no cache: for tests and doctests only).
        batch_size: Items sent to the judge between cache writes.
        profile: The profile deciding which items are open (default: ``medevalkit``).

    Returns:
        One verdict per open item, in input order.
    """
    prof = profile or MedEvalKitProfile()
    store = JudgeCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
    items = _open_items(predictions, prof)
    model_id, revision = judge.model_id, judge.revision
    keys = [cache_key(model_id, revision, JUDGE_PROMPT_VERSION, p.question, t, a) for p, t, a in items]
    records: dict[str, dict[str, Any]] = {}
    if store is not None:
        store.refresh()
        records = {k: r for k in keys if (r := store.get(k)) is not None}
    cached = set(records)
    pending = list(dict.fromkeys(k for k in keys if k not in records))
    by_key = dict(zip(keys, items))
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        prompts = [judge_messages(by_key[k][0].question, by_key[k][1], by_key[k][2]) for k in batch]
        replies = judge.complete(prompts)
        for key, prompt, reply in zip(batch, prompts, replies, strict=True):
            p, truth, answer = by_key[key]
            record = {
                "key": key,
                "judge_model": model_id,
                "judge_revision": revision,
                "prompt_version": JUDGE_PROMPT_VERSION,
                "question": p.question,
                "reference": truth,
                "answer": answer,
                "prompt": prompt,
                "reply": reply,
                "verdict": parse_verdict(reply),
            }
            records[key] = store.add(record) if store is not None else record
    return [
        JudgeVerdict(
            id=p.id,
            question=p.question,
            reference=truth,
            answer=answer,
            verdict=records[k]["verdict"],
            reply=str(records[k]["reply"]),
            judge_model=model_id,
            judge_revision=revision,
            cached=k in cached,
        )
        for k, (p, truth, answer) in zip(keys, items)
    ]


def judged_profile(verdicts: Sequence[JudgeVerdict], *, swapped_labels: bool = False) -> MedEvalKitProfile:
    """The ``medevalkit`` profile with these verdicts: pass it to :func:`medvqa.metrics.evaluate`."""
    first = verdicts[0] if verdicts else None
    judge = {
        "model": first.judge_model if first else "",
        "revision": first.judge_revision if first else "",
        "prompt_version": JUDGE_PROMPT_VERSION,
        "judged": len(verdicts),
        "unparseable": sum(v.verdict is None for v in verdicts),
    }
    return MedEvalKitProfile(
        swapped_labels=swapped_labels,
        judge_verdicts={v.id: v.verdict for v in verdicts},
        judge=judge,
    )
