"""Data-parallel generation: two CPU processes (gloo) under torchrun write what one process writes.

Greedy decoding in float32 on the tiny model gives the same answer for a sample whatever
batch it is in, so the merged file of a sharded run must equal the single-process file byte
for byte; and a run killed part way resumes without losing or answering an item twice.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from medvqa._distributed import Shard, parts_dir
from medvqa._errors import MedVQAError
from medvqa._io import read_jsonl
from medvqa.cli import main
from medvqa.data import load, sample_root
from medvqa.generation import generate_answers
from medvqa.records import VQASample

pytestmark = [pytest.mark.train, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("generation_worker.py")
LIMIT = 12


def _torchrun(nproc: int, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=500, check=False)
    if expect_ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _generated(stdout: str) -> int:
    return sum(int(n) for n in re.findall(r"GENERATED rank=\d+ rows=(\d+)", stdout))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process prediction file of the job (predict CLI, in this process)."""
    out = tmp_path_factory.mktemp("single") / "preds.jsonl"
    argv = ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--limit", str(LIMIT), "--batch-size", "4"]
    assert main([*argv, "--no-progress", "--output", str(out)]) == 0
    return out


def test_two_process_predict_equals_one_process(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    argv = ["--model", "tiny", "--dataset", "vqa_rad", "--limit", str(LIMIT), "--batch-size", "4"]
    proc = _torchrun(2, "-m", "medvqa", "predict", *argv, "--no-progress", "--output", str(out))
    assert out.read_bytes() == single.read_bytes()
    assert not parts_dir(out).exists(), "the parts are removed once merged"
    assert proc.stderr.count("wrote 12 predictions") == 1, "only the main process reports"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl", "preds.run.json"]


def test_two_process_predict_and_score_equals_one_process(tmp_path: Path) -> None:
    argv = ["--model", "tiny", "--quantization", "none", "--dataset", "vqa_rad", "--limit", "8"]
    argv += ["--batch-size", "4", "--n-boot", "20", "--no-progress"]
    assert main(["predict-and-score", *argv, "--output", str(tmp_path / "one")]) == 0
    _torchrun(2, "-m", "medvqa", "predict-and-score", *argv, "--output", str(tmp_path / "two"))
    for name in ("eval.predictions.jsonl", "eval.items.jsonl"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    one, two = (json.loads((tmp_path / d / "eval.scores.json").read_text()) for d in ("one", "two"))
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert (b["aggregates"], b["items"], b["n"]) == (a["aggregates"], a["items"], 8)


def test_killed_two_process_run_resumes_exactly(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    # rank 1 dies at its second generate call (its first batch of 2 is written); torchrun stops rank 0
    killed = _torchrun(
        2,
        str(WORKER),
        str(out),
        "--limit",
        str(LIMIT),
        "--kill-rank",
        "1",
        "--kill-at-call",
        "2",
        expect_ok=False,
    )
    assert killed.returncode != 0
    assert not out.exists() and parts_dir(out).is_dir()
    answered = sum(len(p.read_text().splitlines()) for p in parts_dir(out).glob("*.jsonl"))
    assert 2 <= answered < LIMIT
    resumed = _torchrun(2, str(WORKER), str(out), "--limit", str(LIMIT))
    assert _generated(resumed.stdout) == LIMIT - answered, "finished items are neither lost nor redone"
    assert out.read_bytes() == single.read_bytes()
    assert not parts_dir(out).exists()


def test_two_processes_gather_skipped_images_into_the_run_record(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    # sample 1 goes to rank 1 and sample 4 to rank 0: each rank skips one
    _torchrun(2, str(WORKER), str(out), "--limit", str(LIMIT), "--bad", "1", "4", "--on-bad-image", "skip")
    kept = [line for i, line in enumerate(single.read_text().splitlines(keepends=True)) if i not in (1, 4)]
    assert out.read_text() == "".join(kept)
    record = json.loads(out.with_suffix(".run.json").read_text())
    ids = [json.loads(line)["id"] for line in single.read_text().splitlines()]
    assert [b["id"] for b in record["bad_images"]] == [ids[1], ids[4]]
    assert record["skipped_bad_images"] == 2 and not parts_dir(out).exists()


def test_a_locked_output_stops_every_process(tmp_path: Path) -> None:
    from medvqa._lock import lock_path

    out = tmp_path / "preds.jsonl"
    # this test's own process holds the output: rank 0 is refused and rank 1 must not wait for it
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "token": "held"}
    lock_path(out).write_text(json.dumps(lock))
    proc = _torchrun(2, str(WORKER), str(out), "--limit", "4", expect_ok=False)
    assert proc.returncode != 0
    assert "being written by another run" in proc.stderr
    assert "another process of the launch stopped the run" in proc.stderr
    assert not parts_dir(out).exists() and not out.exists()


def test_parts_of_any_rank_count_resume_in_one_process(single: Path, tmp_path: Path) -> None:
    from medvqa.models import tiny_idefics2

    model, processor = tiny_idefics2(seed=0)
    samples = list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[:LIMIT]
    out = tmp_path / "preds.jsonl"
    # two of three hand-made shards finish; the run is then resumed by one plain process
    for rank in (0, 2):
        mine = generate_answers(model, processor, samples, output=out, shard=Shard(rank, 3), progress=False)
        assert [p.id for p in mine] == [s.id for s in samples[rank::3]]
    assert not out.exists() and len(list(parts_dir(out).iterdir())) == 2
    calls = []
    generate = model.generate

    def counting(**kwargs: object) -> object:
        calls.append(kwargs["input_ids"].shape[0])  # type: ignore[attr-defined]
        return generate(**kwargs)

    model.generate = counting
    preds = generate_answers(model, processor, samples, output=out, batch_size=3, progress=False)
    assert sum(calls) == len(samples[1::3])
    assert [p.id for p in preds] == [s.id for s in samples]
    assert out.read_bytes() == single.read_bytes()
    assert not parts_dir(out).exists()


def _bad_samples(tmp_path: Path, n: int, bad: set[int]) -> list[VQASample]:
    """``n`` samples of the bundled split on copies of their images, those in ``bad`` truncated."""
    from medvqa.records import ImageRef

    out = []
    for i, s in enumerate(list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[:n]):
        assert s.image is not None
        path = tmp_path / f"img{i}.png"
        s.image.open().save(path)
        if i in bad:
            path.write_bytes(path.read_bytes()[:40])
        out.append(VQASample(**{**s.__dict__, "image": ImageRef(path=str(path), root=str(tmp_path))}))
    return out


def test_shards_skip_unreadable_images_into_one_run_record(tmp_path: Path) -> None:
    from medvqa.models import tiny_idefics2

    model, processor = tiny_idefics2(seed=0)
    samples = _bad_samples(tmp_path, 6, bad={1, 4})  # one in each of two shards
    out = tmp_path / "preds.jsonl"
    kwargs: dict[str, Any] = {"output": out, "progress": False, "on_bad_image": "skip", "num_workers": 1}
    with pytest.warns(UserWarning, match="skipped 1 samples"):
        first = generate_answers(model, processor, samples, shard=Shard(0, 2), **kwargs)
    assert [p.id for p in first] == [samples[i].id for i in (0, 2)]
    assert not out.exists(), "merged only when every shard is done"
    with pytest.warns(UserWarning, match="skipped 1 samples"):
        generate_answers(model, processor, samples, shard=Shard(1, 2), **kwargs)
    assert [row["id"] for _, row in read_jsonl(out)] == [samples[i].id for i in (0, 2, 3, 5)]
    assert not parts_dir(out).exists()
    record = json.loads(out.with_suffix(".run.json").read_text())
    assert [b["id"] for b in record["bad_images"]] == [samples[1].id, samples[4].id]
    assert record["skipped_bad_images"] == 2 and record["n"] == 6


def test_every_shard_checks_the_run_record_and_locks_its_part(tmp_path: Path) -> None:
    from medvqa._lock import LockHeldError, lock_path
    from medvqa.models import tiny_idefics2

    model, processor = tiny_idefics2(seed=0)
    samples = list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[:4]
    out = tmp_path / "preds.jsonl"
    generate_answers(model, processor, samples, output=out, shard=Shard(0, 2), progress=False)
    with pytest.raises(MedVQAError, match="max_new_tokens"):
        generate_answers(
            model, processor, samples, output=out, shard=Shard(1, 2), max_new_tokens=7, progress=False
        )
    part = parts_dir(out) / "part-00001.jsonl"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process on this host holds rank 1's part
        lock = {"pid": live.pid, "host": socket.gethostname(), "token": "x"}
        lock_path(part).write_text(json.dumps(lock))
        with pytest.raises(LockHeldError, match="part file"):
            generate_answers(model, processor, samples, output=out, shard=Shard(1, 2), progress=False)
    finally:
        live.kill()
        live.wait()
    assert not out.exists()


def test_a_shard_needs_an_output_file() -> None:
    with pytest.raises(ValueError, match="output file"):
        generate_answers(None, None, [], shard=Shard(0, 2))
    with pytest.raises(ValueError, match="rank"):
        Shard(2, 2)
