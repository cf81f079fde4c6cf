"""The ``server`` engine against a local HTTP server speaking the chat-completions shape.

The fake server renders every request's messages with the served family's chat template
(Idefics2's unless a test says otherwise), as vLLM does with the model's own template, decodes
its images, and answers what the ``hf`` engine
answered for that exact prompt and those exact pixels; so the server engine's file equals the
``hf`` engine's file only if it sent exactly what the ``hf`` engine used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from PIL import Image

from medvqa._openai_client import ChatEndpointError
from medvqa.chat import render_messages
from medvqa.cli import main
from medvqa.collate import GenerationCollator
from medvqa.data import load, sample_root
from medvqa.generation import generate_answers
from medvqa.records import VQASample
from medvqa.server import ServerEngine
from medvqa.transforms import NoImage

pytestmark = pytest.mark.train
LIMIT = 7


def _key(text: str, pixels: list[bytes]) -> str:
    return hashlib.sha256(text.encode() + b"".join(pixels)).hexdigest()


def _idefics2_render(messages: list[dict[str, Any]]) -> str:
    return render_messages(messages, add_generation_prompt=True)


class _State:
    def __init__(
        self, answers: dict[str, str], render: Callable[[list[dict[str, Any]]], str] = _idefics2_render
    ) -> None:
        self.answers = answers
        self.render = render  # the served model's chat template
        self.requests: list[dict[str, Any]] = []
        self.fail_status: dict[int, int] = {}  # request number (1-based) -> status to answer
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0


def _decode(
    messages: list[dict[str, Any]], render: Callable[[list[dict[str, Any]]], str]
) -> tuple[str, list[bytes]]:
    pixels: list[bytes] = []
    plain = []
    for m in messages:
        content = []
        for part in m["content"]:
            if part["type"] == "image_url":
                url = part["image_url"]["url"]
                assert url.startswith("data:image/png;base64,")
                image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
                pixels.append(image.convert("RGB").tobytes())
                content.append({"type": "image"})
            else:
                content.append(part)
        plain.append({"role": m["role"], "content": content})
    return render(plain), pixels


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                number = len(state.requests)
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            time.sleep(0.02)
            status = state.fail_status.get(number)
            text, pixels = _decode(body["messages"], state.render)
            reply: dict[str, Any] = {
                "id": f"c{number}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": " " + state.answers.get(_key(text, pixels), "??"),
                        },
                        "finish_reason": "stop",
                    }
                ],
            }
            data = json.dumps(reply if status is None else {"error": "scripted"}).encode()
            with state.lock:
                state.in_flight -= 1
            self.send_response(status or 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The samples (with and without image), the hf engine's file and its answers by prompt and pixels."""
    from medvqa.models import tiny_idefics2

    model, processor = tiny_idefics2(seed=0)
    test = list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[:LIMIT]
    samples = [*test[:5], *NoImage()(test[5:])]
    hf_file = tmp_path_factory.mktemp("hf") / "hf.jsonl"
    preds = generate_answers(
        model, processor, samples, batch_size=4, max_new_tokens=6, output=hf_file, progress=False
    )
    collator = GenerationCollator(processor)
    answers = {}
    for sample, pred, text in zip(samples, preds, collator.texts(samples), strict=True):
        pixels = [] if sample.image is None else [sample.image.open().tobytes()]
        answers[_key(text, pixels)] = pred.prediction
    return {"samples": samples, "hf_file": hf_file, "answers": answers}


@contextlib.contextmanager
def _serve(state: _State) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(job: dict[str, Any]) -> Iterator[tuple[str, _State]]:
    state = _State(job["answers"])
    with _serve(state) as url:
        yield url, state


def test_server_engine_sends_what_hf_uses_and_writes_the_same_file(
    job: dict[str, Any], server: tuple[str, _State], tmp_path: Path
) -> None:
    url, state = server
    engine = ServerEngine(url, "idefics2", concurrency=3)
    out = tmp_path / "server.jsonl"
    generate_answers(engine, None, job["samples"], max_new_tokens=6, output=out, progress=False)
    assert out.read_bytes() == job["hf_file"].read_bytes()
    assert len(state.requests) == LIMIT and 1 < state.max_in_flight <= 3
    for body in state.requests:
        assert body["model"] == "idefics2" and body["temperature"] == 0.0 and body["max_tokens"] == 6
        assert "<end_of_utterance>" in body["stop"]


def test_retries_then_resume_without_asking_twice(
    job: dict[str, Any], server: tuple[str, _State], tmp_path: Path
) -> None:
    url, state = server
    state.fail_status = {1: 503, 5: 400}  # one retryable failure, then one that stops the run
    engine = ServerEngine(url, "idefics2", concurrency=1, max_retries=2)
    engine.client._sleep = lambda s: None
    out = tmp_path / "server.jsonl"
    with pytest.raises(ChatEndpointError, match="HTTP 400"):
        generate_answers(engine, None, job["samples"], max_new_tokens=6, output=out, progress=False)
    assert len(out.read_text().splitlines()) == 3, "the answers before the failure are kept"
    state.fail_status = {}
    asked = len(state.requests)
    generate_answers(engine, None, job["samples"], max_new_tokens=6, output=out, progress=False)
    assert len(state.requests) - asked == LIMIT - 3
    assert out.read_bytes() == job["hf_file"].read_bytes()


def test_server_engine_skips_unreadable_images_or_names_them(
    job: dict[str, Any], server: tuple[str, _State], tmp_path: Path
) -> None:
    from medvqa._errors import ImageLoadError
    from medvqa.records import ImageRef

    url, state = server
    samples = list(job["samples"][:3])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    samples[1] = VQASample(**{**samples[1].__dict__, "image": ImageRef(path=str(broken), root=str(tmp_path))})
    engine = ServerEngine(url, "idefics2", concurrency=2)
    with pytest.raises(ImageLoadError, match=r"broken\.png"):
        generate_answers(engine, None, samples, max_new_tokens=6, output=tmp_path / "e.jsonl", progress=False)
    out = tmp_path / "s.jsonl"
    asked = len(state.requests)
    with pytest.warns(UserWarning, match="skipped 1 samples"):
        preds = generate_answers(
            engine, None, samples, max_new_tokens=6, output=out, progress=False, on_bad_image="skip"
        )
    assert [p.id for p in preds] == [samples[0].id, samples[2].id]
    assert len(state.requests) - asked == 2, "the unreadable sample is not sent"
    record = json.loads(out.with_suffix(".run.json").read_text())
    assert [b["id"] for b in record["bad_images"]] == [samples[1].id]


def test_predict_cli_with_the_server_engine(
    server: tuple[str, _State], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = server
    base = ["predict", "--dataset", "vqa_rad", "--limit", "3", "--max-new-tokens", "6", "--no-progress"]
    assert main([*base, "--model", "tiny", "--output", str(tmp_path / "hf.jsonl")]) == 0
    srv = ["--engine", "server", "--server-url", url, "--server-model", "idefics2"]
    assert main([*base, "--model", "tiny", *srv, "--output", str(tmp_path / "srv.jsonl")]) == 0
    assert (tmp_path / "srv.jsonl").read_bytes() == (tmp_path / "hf.jsonl").read_bytes()
    run = json.loads((tmp_path / "srv.run.json").read_text())
    assert run["engine"] == "server" and run["server_model"] == "idefics2"
    evaluate = [
        "predict-and-score",
        "--model",
        "tiny",
        "--dataset",
        "vqa_rad",
        "--limit",
        "3",
        "--max-new-tokens",
        "6",
    ]
    evaluate += ["--n-boot", "0", "--no-progress", *srv, "--output", str(tmp_path / "eval")]
    assert main(evaluate) == 0
    assert (tmp_path / "eval" / "eval.predictions.jsonl").read_bytes() == (tmp_path / "hf.jsonl").read_bytes()
    assert main([*base, "--model", "tiny", "--engine", "server", "--output", str(tmp_path / "x.jsonl")]) != 0
    assert "--server-url" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3"])
def test_server_engine_sends_what_hf_renders_for_the_family(
    job: dict[str, Any], family: str, tmp_path: Path
) -> None:
    """A server rendering with the family's template gets the hf engine's prompts; stops are the family's."""
    from medvqa._errors import MedVQAError
    from medvqa.models import get_family, tiny_model

    model, processor = tiny_model(family, seed=0)
    samples = job["samples"]
    hf_file = tmp_path / "hf.jsonl"
    preds = generate_answers(
        model, processor, samples, batch_size=4, max_new_tokens=6, output=hf_file, progress=False
    )
    answers = {}
    for sample, pred, text in zip(samples, preds, GenerationCollator(processor).texts(samples), strict=True):
        pixels = [] if sample.image is None else [sample.image.open().tobytes()]
        answers[_key(text, pixels)] = pred.prediction

    def render(messages: list[dict[str, Any]]) -> str:
        return str(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    state = _State(answers, render)
    out = tmp_path / "server.jsonl"
    with _serve(state) as url:
        engine = ServerEngine(url, family, family=family, concurrency=3)
        generate_answers(engine, None, samples, max_new_tokens=6, output=out, progress=False)
        assert out.read_bytes() == hf_file.read_bytes()
        assert {tuple(b["stop"]) for b in state.requests} == {get_family(family).stop_tokens}
        for f in (hf_file, out):
            assert json.loads(f.with_suffix(".run.json").read_text())["family"] == family
        other = ServerEngine(url, family, family="idefics2")
        with pytest.raises(MedVQAError, match=f"family was '{family}', now 'idefics2'"):
            generate_answers(other, None, samples, max_new_tokens=6, output=out, progress=False)
