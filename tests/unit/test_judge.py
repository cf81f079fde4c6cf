"""Judged scoring: a real local endpoint, the verdict cache (resume, concurrent writers), the audit."""

from __future__ import annotations

import json
import math
import multiprocessing
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from medvqa._judge_cache import JudgeCache, cache_key
from medvqa._openai_client import ChatClient, Message
from medvqa.judge import (
    JUDGE_PROMPT_VERSION,
    EndpointJudge,
    judge_predictions,
    judge_report,
    judged_profile,
    parse_verdict,
)
from medvqa.metrics import evaluate
from medvqa.records import Prediction

PREDS = [
    Prediction("c1", "Is it normal?", "no", "No.", "closed", dataset="vqa_rad"),
    Prediction("o1", "Which organ?", "liver", "The liver", "open", dataset="vqa_rad"),
    Prediction("o2", "Which side?", "left", "left", "open", dataset="vqa_rad"),
    Prediction("o3", "What lobe?", "upper lobe", "lower lobe", "open", dataset="vqa_rad"),
    Prediction("o4", "Which organ?", "kidney", "\\boxed{Renal}", "open", dataset="vqa_rad"),
    Prediction("o5", "Modality?", "ct", "a CT scan", "open", dataset="vqa_rad"),
]


def _field(prompt: str, name: str) -> str:
    return prompt.split(f"The {name}: ", 1)[1].split("\n", 1)[0]


def _verdict_for(prompt: str) -> str:
    """A fake judge: right when the reference is a substring; 'renal' is answered with garbage."""
    answer, reference = _field(prompt, "user's answer"), _field(prompt, "standard answer")
    if "renal" in answer:
        return "I cannot decide."
    return f"<think>compare</think>\n<judge>{0 if reference in answer else 1}</judge>"


class _Endpoint:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = 0
        self.lock = threading.Lock()


def _handler(state: _Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                fail = state.fail_first > 0
                state.fail_first -= 1
            if fail:
                data, status = b'{"error": "overloaded"}', 503
            else:
                text = _verdict_for(body["messages"][0]["content"])
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                }
                data, status = json.dumps(reply).encode(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def endpoint() -> Iterator[tuple[str, _Endpoint]]:
    state = _Endpoint()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _judge(url: str) -> EndpointJudge:
    client = ChatClient(url, "judge-7b", backoff_s=0.0, sleep=lambda s: None, max_workers=3)
    return EndpointJudge(url, "judge-7b", revision="r1", client=client)


def test_endpoint_judge_end_to_end_with_cache(endpoint: tuple[str, _Endpoint], tmp_path: Path) -> None:
    url, state = endpoint
    state.fail_first = 1  # one 503 first: retried by the client
    cache = tmp_path / "judge.jsonl"
    verdicts = judge_predictions(PREDS, _judge(url), cache=cache)
    assert [v.id for v in verdicts] == ["o1", "o2", "o3", "o4", "o5"]  # open items only, in order
    assert [v.verdict for v in verdicts] == [True, True, False, None, True]
    assert not any(v.cached for v in verdicts)
    sent = state.requests[-1]
    assert sent["temperature"] == 0.0 and sent["model"] == "judge-7b"
    assert "The user's answer: \\boxed" not in sent["messages"][0]["content"]  # pre-extracted
    # the cache is readable JSONL with the exact prompt
    lines = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 5
    rec = next(r for r in lines if r["answer"] == "renal")
    assert rec["verdict"] is None and rec["reply"] == "I cannot decide."
    assert rec["prompt"][0]["content"].endswith("<judge>0</judge>")
    assert rec["key"] == cache_key("judge-7b", "r1", JUDGE_PROMPT_VERSION, "Which organ?", "kidney", "renal")
    # rerun: no request, same numbers
    n_requests = len(state.requests)
    again = judge_predictions(PREDS, _judge(url), cache=cache)
    assert len(state.requests) == n_requests
    assert [v.verdict for v in again] == [v.verdict for v in verdicts] and all(v.cached for v in again)
    # plugs into evaluate: closed by rule, open by the judge, unparseable counted
    r = evaluate(PREDS, profile=judged_profile(again), n_boot=0)
    assert (r["accuracy"].numerator, r["accuracy"].n) == (4.0, 6)
    assert r["judge_unparseable"].numerator == 1.0
    assert r["em/open"].numerator == 1.0
    assert r.options["judge"]["model"] == "judge-7b"


class _Flaky:
    """A judge that dies (like a killed process) after ``budget`` replies."""

    model_id, revision = "flaky", "0"

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.calls = 0

    def complete(self, conversations: Sequence[Sequence[Message]]) -> list[str]:
        out = []
        for c in conversations:
            if self.calls >= self.budget:
                raise KeyboardInterrupt
            self.calls += 1
            out.append(_verdict_for(c[0]["content"]))
        return out


def test_resume_after_interruption(tmp_path: Path) -> None:
    cache = tmp_path / "c.jsonl"
    with pytest.raises(KeyboardInterrupt):
        judge_predictions(PREDS, _Flaky(budget=3), cache=cache, batch_size=2)
    assert len(JudgeCache(cache)) == 2  # the first full batch was saved
    # a crash mid-line leaves a partial last line: it is dropped on open
    with cache.open("a", encoding="utf-8") as fh:
        fh.write('{"key": "half')
    second = _Flaky(budget=100)
    verdicts = judge_predictions(PREDS, second, cache=cache, batch_size=2)
    assert second.calls == 3
    assert [v.cached for v in verdicts] == [True, True, False, False, False]
    assert cache.read_text(encoding="utf-8").count("\n") == 5


def _writer(path: str, worker: int) -> None:
    cache = JudgeCache(path)
    for i in range(40):
        key = f"k{i % 25}"  # overlapping keys between workers
        cache.add({"key": key, "worker": worker, "reply": "x" * 500, "verdict": True})


def test_concurrent_writers_never_corrupt_or_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_text(encoding="utf-8").splitlines()
    keys = [json.loads(line)["key"] for line in lines]  # every line parses
    assert sorted(keys) == sorted(f"k{i}" for i in range(25))  # each key stored exactly once


def test_parse_verdict() -> None:
    assert parse_verdict("<think>x</think><judge> 0 </judge>") is True
    assert parse_verdict("<judge>1</judge>") is False
    assert parse_verdict("0") is True  # no tags: the whole reply, as upstream
    assert parse_verdict("<judge>0</judge><judge>1</judge>") is None  # '0 1'
    assert parse_verdict("") is None


def test_report_agreement_kappa_disagreements_and_expert(tmp_path: Path) -> None:
    class Fixed:
        model_id, revision = "fixed", "1"

        def complete(self, conversations: Sequence[Sequence[Message]]) -> list[str]:
            return [_verdict_for(c[0]["content"]) for c in conversations]

    verdicts = judge_predictions(PREDS, Fixed(), cache=None)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("id,correct,justification\no1,1,\no2,1,\no3,1,generous\no5,,\n", encoding="utf-8")
    report = judge_report(PREDS, verdicts, review_sheet=sheet)
    # 4 parseable verdicts: o1 T, o2 T, o3 F, o5 T; o4 unparseable, listed and left out
    assert report.judged_accuracy.numerator == 3 and report.judged_accuracy.n == 4
    assert report.unparseable == [{"id": "o4", "answer": "renal", "reply": "I cannot decide."}]
    # medevalkit's exact match: o2 only -> agrees on o2, o3; disagrees on o1, o5
    a = report.agreements["medevalkit:correct"]
    assert (a.n, a.agree, a.judge_only, a.rater_only) == (4, 2, 2, 0)
    # kappa by hand: po = 0.5, pa = 0.75, pb = 0.25, pe = 0.375 -> 0.2
    assert a.kappa == pytest.approx((0.5 - 0.375) / (1 - 0.375))
    assert report.rule_accuracy["medevalkit:correct"].numerator == 1
    assert report.rule_accuracy["paper:containment"].numerator == 3  # substring rule agrees fully
    assert report.agreements["paper:containment"].disagree == 0
    top = report.disagreements[0]
    assert top["id"] in {"o1", "o5"} and "medevalkit" in top["rules"]
    expert = report.agreements["expert"]  # o1, o2, o3 marked; o5 left empty
    assert (expert.n, expert.agree, expert.rater_only) == (3, 2, 1)
    assert report.expert_accuracy is not None and report.expert_accuracy.numerator == 3
    md = report.to_markdown()
    assert "Unparseable verdicts" in md and "| expert |" in md
    data = report.to_dict()
    assert json.loads(json.dumps(data))["agreements"]["medevalkit:correct"]["disagree"] == 2
    assert math.isnan(judge_report(PREDS, []).agreements["strict:accuracy"].kappa)


def test_cli_score_with_endpoint_judge(
    endpoint: tuple[str, _Endpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medvqa.cli import main

    url, state = endpoint
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in PREDS), encoding="utf-8")
    args = ["score", str(path), "--profile", "medevalkit", "strict", "--n-boot", "0"]
    judge_args = ["--judge", url, "--judge-model", "judge-7b", "--judge-report", str(tmp_path / "audit.json")]
    assert main([*args, *judge_args, "--format", "json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    run = data["runs"][0]
    assert run["profile"] == "medevalkit" and run["options"]["judge"]["model"] == "judge-7b"
    assert run["aggregates"]["accuracy"]["numerator"] == 4.0
    assert data["judge"][str(path)]["unparseable"][0]["id"] == "o4"
    assert "5 open items judged (5 new, 0 from" in captured.err
    assert (tmp_path / "preds.jsonl.judge.jsonl").is_file()
    assert json.loads((tmp_path / "audit.json").read_text())[str(path)]["n_open"] == 5
    n_requests = len(state.requests)
    assert main([*args, *judge_args]) == 0  # table output, from the cache
    out = capsys.readouterr()
    assert len(state.requests) == n_requests
    assert "Judged scoring: judge-7b" in out.out and "(0 new, 5 from" in out.err
    assert main(["score", str(path), "--judge", url, "--judge-model", "m"]) == 1
    assert "--judge needs the medevalkit profile" in capsys.readouterr().err
    assert main(["score", str(path), "--profile", "all", "--judge", url]) == 1
    assert "--judge-model NAME" in capsys.readouterr().err
