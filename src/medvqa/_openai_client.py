"""A small client for OpenAI-compatible ``/v1/chat/completions`` endpoints.

Standard library only (``urllib`` and ``concurrent.futures``), so the light core can talk to
vLLM, SGLang, TGI, llama.cpp's server or a hosted API without a new dependency.

Requests are greedy by default (``temperature=0``). Each request is retried with exponential
backoff on HTTP 429, any 5xx status and connection errors (refused, reset, timeout); any other
status fails at once. :meth:`ChatClient.complete_many` sends requests from a bounded thread
pool and returns results in input order.

Example (not run: it needs a server)::

    client = ChatClient("http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-7B-Instruct")
    reply = client.complete([{"role": "user", "content": "Is 2 > 1? Answer yes or no."}])
    reply.text  # 'yes'
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from medvqa._errors import MedVQAError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ChatClient", "ChatCompletion", "ChatEndpointError", "Message", "chat_url"]

Message = Mapping[str, Any]
"""One chat message: ``{"role": ..., "content": str | list[part]}``.

A content part is ``{"type": "text", "text": ...}`` or
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``.
"""

_RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_BODY_EXCERPT = 500


class ChatEndpointError(MedVQAError, RuntimeError):
    """A chat-completions request failed for good (after any retries).

    Args:
        message: What went wrong.
        url: The URL that was requested.
        status: The last HTTP status, or ``None`` for a connection error.
        body: An excerpt of the last response body (at most 500 characters).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None, body: str = "") -> None:
        self.url = url
        self.status = status
        self.body = body
        parts = [f"{url}: {message}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if body:
            parts.append(f"body: {body}")
        super().__init__("; ".join(parts))


@dataclass(frozen=True)
class ChatCompletion:
    """One completion returned by the endpoint.

    Attributes:
        text: The first choice's message content (``""`` when the server sent ``null``).
        finish_reason: The first choice's ``finish_reason`` (``"stop"``, ``"length"``, ...).
        model: The model name the server reports.
        usage: The ``usage`` object (token counts) as sent, or an empty dict.
        raw: The whole decoded response.
    """

    text: str
    finish_reason: str | None
    model: str
    usage: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def chat_url(base_url: str) -> str:
    """Return the chat-completions URL for a server base URL.

    Accepts ``http://host:port``, ``http://host:port/v1`` or the full
    ``.../v1/chat/completions`` URL.

    >>> chat_url("http://127.0.0.1:8000")
    'http://127.0.0.1:8000/v1/chat/completions'
    >>> chat_url("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000/v1/chat/completions'
    >>> chat_url("https://api.example.com/v1/chat/completions")
    'https://api.example.com/v1/chat/completions'
    """
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


class RequestOptions(TypedDict, total=False):
    """The options of one chat-completions request (see :meth:`ChatClient.payload`)."""

    max_tokens: int
    temperature: float
    stop: Sequence[str] | None
    extra: Mapping[str, Any] | None


class ChatClient:
    """Client for one model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: Server URL (``http://host:port``, ``.../v1`` or the full endpoint URL).
        model: The ``model`` field sent with every request.
        api_key: Sent as ``Authorization: Bearer <key>`` when given.
        timeout_s: Socket timeout of one attempt, in seconds.
        max_retries: Retries after the first attempt on 429, 5xx and connection errors.
        backoff_s: First backoff delay; doubles after each retry.
        max_backoff_s: Upper bound of one backoff delay (a ``Retry-After`` header is honoured
            up to this bound).
        max_workers: Requests in flight at once in :meth:`complete_many`.
        sleep: The sleep function (tests replace it).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_workers: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0 or max_workers < 1 or timeout_s <= 0:
            raise ValueError(
                f"need max_retries >= 0, max_workers >= 1, timeout_s > 0; got {max_retries}, "
                f"{max_workers}, {timeout_s}"
            )
        self.url = chat_url(base_url)
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_workers = max_workers
        self._api_key = api_key
        self._sleep = sleep

    def payload(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Return the JSON body :meth:`complete` would send (for logging and caching keys).

        >>> ChatClient("http://h", "m").payload([{"role": "user", "content": "hi"}], max_tokens=4)
        {'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': 4, 'temperature': 0.0}
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stop:
            body["stop"] = list(stop)
        if extra:
            body.update(extra)
        return body

    def complete(self, messages: Sequence[Message], **options: Unpack[RequestOptions]) -> ChatCompletion:
        """Send one chat-completions request and return the first choice.

        Args:
            messages: The conversation.
            **options: The request's options (:class:`RequestOptions`): ``max_tokens``
                (default 256), ``temperature`` (default 0, greedy decoding), ``stop``
                strings and ``extra`` request fields (e.g. ``{"seed": 0}``, sent as given).

        Raises:
            ChatEndpointError: A non-retryable status, retries exhausted, or a malformed reply.
        """
        body = self.payload(messages, **options)
        return _parse_completion(self._post(json.dumps(body).encode("utf-8")), self.url)

    def complete_many(
        self, conversations: Sequence[Sequence[Message]], **options: Unpack[RequestOptions]
    ) -> list[ChatCompletion]:
        """Send many requests, at most ``max_workers`` at once; results keep input order.

        The first failure (after its retries) is raised once the requests in flight finish.
        ``options`` are those of :meth:`complete`.
        """

        def one(messages: Sequence[Message]) -> ChatCompletion:
            return self.complete(messages, **options)

        if len(conversations) <= 1 or self.max_workers == 1:
            return [one(m) for m in conversations]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(conversations))) as pool:
            return list(pool.map(one, conversations))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, data: bytes) -> Any:
        """POST ``data`` with retries; return the decoded JSON reply."""
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            request = urllib.request.Request(self.url, data=data, headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                body = _excerpt(exc.read())
                if exc.code not in _RETRY_STATUSES:
                    raise ChatEndpointError(
                        "request rejected", url=self.url, status=exc.code, body=body
                    ) from exc
                if last:
                    raise ChatEndpointError(
                        f"request failed after {attempt + 1} attempts",
                        url=self.url,
                        status=exc.code,
                        body=body,
                    ) from exc
                wait = _retry_after(exc.headers.get("Retry-After"), delay)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if last:
                    reason = getattr(exc, "reason", exc)
                    raise ChatEndpointError(
                        f"cannot reach the server after {attempt + 1} attempts: {reason}",
                        url=self.url,
                    ) from exc
                wait = delay
            else:
                try:
                    return json.loads(raw)
                except ValueError as exc:
                    raise ChatEndpointError(
                        "reply is not JSON", url=self.url, status=200, body=_excerpt(raw)
                    ) from exc
            self._sleep(min(wait, self.max_backoff_s))
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "..."


def _retry_after(header: str | None, default: float) -> float:
    if header is None:
        return default
    try:
        return max(float(header), 0.0)
    except ValueError:
        return default


def _parse_completion(reply: Any, url: str) -> ChatCompletion:
    try:
        choice = reply["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ChatEndpointError(
            "reply has no choices[0].message", url=url, status=200, body=_excerpt(json.dumps(reply).encode())
        ) from exc
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ChatCompletion(
        text=content if isinstance(content, str) else "",
        finish_reason=choice.get("finish_reason"),
        model=str(reply.get("model", "")),
        usage=dict(reply.get("usage") or {}),
        raw=reply,
    )
