"""The chat-completions client against a real local HTTP server speaking the OpenAI shape."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from medvqa._openai_client import ChatClient, ChatEndpointError


class _Server:
    """A fake endpoint: scripted failures first, then echoes the last user text upper-cased."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.failures: list[tuple[int, str]] = []  # (status, body) served before successes
        self.delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()


def _handler(state: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            with state.lock:
                state.requests.append(body)
                state.headers.append(dict(self.headers))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                failure = state.failures.pop(0) if state.failures else None
            # A request stops counting as in flight just before its reply is written: once the
            # client has the reply it may send its next request, which must not overlap this one.
            try:
                if self.path != "/v1/chat/completions":
                    status, data = 404, b'{"error": "not found"}'
                elif failure is not None:
                    status, data = failure[0], failure[1].encode()
                else:
                    time.sleep(state.delay_s)
                    status, data = 200, json.dumps(_reply(body)).encode()
            finally:
                with state.lock:
                    state.in_flight -= 1
            self._send(status, data)

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        kinds = "+".join(part["type"] for part in content)
        text = next(p["text"] for p in content if p["type"] == "text") + " [" + kinds + "]"
    else:
        text = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text.upper()},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


@pytest.fixture
def server() -> Iterator[tuple[str, _Server]]:
    state = _Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _client(url: str, **kw: Any) -> ChatClient:
    sleeps: list[float] = []
    client = ChatClient(url, "judge-m", sleep=sleeps.append, backoff_s=0.5, **kw)
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def test_request_shape_and_reply(server: tuple[str, _Server]) -> None:
    url, state = server
    client = _client(url, api_key="sk-test")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what organ?"}, image]},
    ]
    reply = client.complete(messages, max_tokens=7, stop=["\n"])
    assert reply.text == "WHAT ORGAN? [TEXT+IMAGE_URL]"
    assert reply.finish_reason == "stop"
    assert reply.model == "judge-m"
    assert reply.usage["total_tokens"] == 4
    sent = state.requests[0]
    assert sent == {
        "model": "judge-m",
        "messages": messages,
        "max_tokens": 7,
        "temperature": 0.0,
        "stop": ["\n"],
    }
    assert state.headers[0]["Authorization"] == "Bearer sk-test"


def test_retries_429_and_5xx_then_succeeds(server: tuple[str, _Server]) -> None:
    url, state = server
    state.failures = [(429, '{"error": "slow down"}'), (503, '{"error": "busy"}')]
    client = _client(url)
    assert client.complete([{"role": "user", "content": "yes"}]).text == "YES"
    assert len(state.requests) == 3
    assert client.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]


def test_client_error_is_not_retried_and_names_url_status_body(
    server: tuple[str, _Server],
) -> None:
    url, state = server
    state.failures = [(400, '{"error": "bad max_tokens"}')]
    client = _client(url)
    with pytest.raises(ChatEndpointError) as info:
        client.complete([{"role": "user", "content": "x"}])
    assert len(state.requests) == 1
    err = info.value
    assert err.status == 400
    assert err.url == f"{url}/v1/chat/completions"
    assert "bad max_tokens" in str(err) and url in str(err) and "400" in str(err)


def test_retries_exhausted(server: tuple[str, _Server]) -> None:
    url, state = server
    state.failures = [(500, "boom")] * 3
    client = _client(url, max_retries=2)
    with pytest.raises(ChatEndpointError, match="after 3 attempts") as info:
        client.complete([{"role": "user", "content": "x"}])
    assert info.value.status == 500 and info.value.body == "boom"
    assert len(state.requests) == 3


def test_connection_refused_is_retried_then_reported() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(ChatEndpointError, match="cannot reach the server after 3 attempts"):
        client.complete([{"role": "user", "content": "x"}])
    assert client.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]


def test_complete_many_keeps_order_and_bounds_concurrency(server: tuple[str, _Server]) -> None:
    url, state = server
    state.delay_s = 0.02
    client = _client(url, max_workers=3)
    texts = [f"item {i}" for i in range(20)]
    replies = client.complete_many([[{"role": "user", "content": t}] for t in texts])
    assert [r.text for r in replies] == [t.upper() for t in texts]
    assert 1 < state.max_in_flight <= 3


def test_malformed_reply_is_an_error(server: tuple[str, _Server]) -> None:
    url, state = server
    state.failures = [(200, '{"choices": []}')]
    with pytest.raises(ChatEndpointError, match="no choices"):
        _client(url).complete([{"role": "user", "content": "x"}])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ChatClient("http://h", "m", max_workers=0)
