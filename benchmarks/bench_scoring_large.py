"""Time and peak memory of ``medvqa score --profile all --by modality`` on 100,000 predictions.

Input: a synthetic prediction file written by this script (seeded): references drawn from the
official PathVQA test answers when ``../shared/data`` holds them (else from a built-in list),
half of them yes/no questions; predictions that repeat the reference, embed it in a sentence
with filler words, or answer something else; a ``modality`` field with three values. Filler
words are drawn from 2,000 made-up words, so that most open predictions are distinct.

Measurements, each as a subprocess whose wall time, CPU time (user + system) and peak resident
memory (``ru_maxrss`` of the child) are read by a small wrapper process (on a shared machine the
CPU time is the steadier figure):

1. the job: ``python -m medvqa score FILE --profile all --by modality -o OUT`` (six profiles,
   1,000 bootstrap replicates per interval, a breakdown by modality);
2. the same job with the five profiles that ``--profile all`` named before ``medevalkit``
   was added (``strict paper llava_med lmms_eval multimedeval``);
3. the baseline, measured in the same run: plain Python reading the same file and parsing
   every line with ``json.loads`` into a list of dicts (what any scorer must at least do);
4. with ``--against REV``: ``--profile all --by modality`` as the library at git revision
   ``REV`` runs it (its ``src/`` exported with ``git archive`` to a temporary folder), on the
   same file, alternating with the current code ``--repeat`` times.

Ratios are job / baseline; the absolute figures are printed beside them. The scoring target
(at most 10 s and 400 MB where the library at ``9dfa538`` took 45.9 s and 1.46 GB on the same
kind of input) is machine-independent as a ratio: the job must take at most 10 / 45.9 = 0.218
of the time of ``--against 9dfa538``, measured in the same run.

    python benchmarks/bench_scoring_large.py [N_ROWS] [--against REV] [--repeat K]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from _common import REPO_ROOT, SHARED_DATA, emit, run_timed

_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
if done.returncode:
    sys.exit(done.stderr)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_mb": usage.ru_maxrss / 1024}))
"""

_BASELINE = "import json, sys; rows = [json.loads(line) for line in open(sys.argv[1], encoding='utf-8')]"

_FALLBACK_ANSWERS = ["left lung", "liver", "right kidney", "ct", "mri", "brain", "heart", "axial", "2", "fat"]


def _answers() -> list[str]:
    path = SHARED_DATA / "pathvqa" / "official_qa" / "pvqa_test.json"
    if not path.is_file():
        return _FALLBACK_ANSWERS
    out = []
    for record in json.loads(path.read_text(encoding="utf-8")):
        for label in record["labelf"]["pvqa"]:
            out.extend(str(a) for a in label)
    return [a for a in out if a not in ("yes", "no")] or _FALLBACK_ANSWERS


def write_input(path: Path, n: int, *, seed: int = 0) -> None:
    """Write ``n`` synthetic predictions (JSON Lines, the library's own writer) to ``path``."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from medvqa._io import atomic_write_jsonl
    from medvqa.records import Prediction

    rng = random.Random(seed)
    answers = _answers()
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    closed_preds = ["Yes.", "No", "No, there is no {w}.", "Normal.", "yes and no", "Answer: yes", "{w}"]
    rows = []
    for i in range(n):
        filler = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.5:
            ref, kind = rng.choice(("yes", "no")), "closed"
            pred = rng.choice(closed_preds).format(w=filler)
        else:
            ref, kind = rng.choice(answers), "open"
            pick = rng.random()
            pred = (
                ref
                if pick < 0.3
                else f"The {ref} {filler}."
                if pick < 0.6
                else f"{rng.choice(answers)} {filler}"
            )
        rows.append(
            Prediction(
                f"synthetic:{i}",
                f"question {i}?",
                ref,
                pred,
                kind,  # type: ignore[arg-type]
                metadata={"modality": rng.choice(("CT", "MRI", "X-Ray"))},
            ).to_dict()
        )
    atomic_write_jsonl(path, rows)


def _measure(cmd: list[str], *, env: dict[str, str] | None = None) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env=env,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


_FIVE = ["strict", "paper", "llava_med", "lmms_eval", "multimedeval"]


def _export(rev: str, dest: Path) -> Path:
    """The ``src/`` folder of git revision ``rev``, written under ``dest``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _emit_job(what: str, job: dict[str, float], base: dict[str, float], n: int) -> None:
    for key, label, unit, meaning in (
        (
            "wall_s",
            "wall time",
            "s",
            "wall time / wall time of json.loads on every line (same file, same run)",
        ),
        ("cpu_s", "CPU time (user + system)", "s", "CPU time / CPU time of json.loads on every line"),
        ("peak_mb", "peak memory", "MB", "peak RSS / peak RSS of json.loads on every line into a list"),
    ):
        emit(f"{what}: {label}", job[key], unit, n=n, baseline=base[key], ratio=job[key] / base[key],
             ratio_meaning=meaning)  # fmt: skip


def _against(rev: str, path: Path, out: Path, n: int, repeat: int) -> None:
    """Alternate the current job with revision ``rev``'s; emit the medians and their ratio."""
    src = _export(rev, out / "rev")
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = ["score", str(path), "--profile", "all", "--by", "modality", "-o"]
    runs: dict[str, list[dict[str, float]]] = {"current": [], rev: []}
    for _ in range(repeat):
        runs[rev].append(_measure([sys.executable, "-m", "medvqa", *args, str(out / "rev.txt")], env=env))
        runs["current"].append(_measure([sys.executable, "-m", "medvqa", *args, str(out / "cur.txt")]))
    for key, unit in (("wall_s", "s"), ("cpu_s", "s"), ("peak_mb", "MB")):
        mine = _median([r[key] for r in runs["current"]])
        theirs = _median([r[key] for r in runs[rev]])
        emit(
            f"medvqa score, {n:,} rows, --profile all --by modality: {key} against {rev}",
            mine,
            unit,
            n=n,
            baseline=theirs,
            ratio=mine / theirs,
            ratio_meaning=f"median of {repeat} runs of the current code / median of {repeat} runs of {rev}, "
            "alternating, same file; the scoring target is a time ratio of at most 0.218 against 9dfa538",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--against", metavar="REV", help="also time the library at this git revision")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side with --against")
    args = parser.parse_args()
    n = args.n_rows
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.jsonl"
        write_input(path, n)
        base = _measure([sys.executable, "-c", _BASELINE, str(path)])
        job_cmd = [sys.executable, "-m", "medvqa", "score", str(path), "--by", "modality"]
        job = _measure([*job_cmd, "--profile", "all", "-o", str(Path(tmp) / "scores.txt")])
        five = _measure([*job_cmd, "--profile", *_FIVE, "-o", str(Path(tmp) / "five.txt")])
        if args.against:
            _against(args.against, path, Path(tmp), n, args.repeat)
    reps = "1000 bootstrap replicates"
    _emit_job(f"medvqa score, {n:,} rows, --profile all (six profiles) --by modality, {reps}", job, base, n)
    _emit_job(
        f"medvqa score, {n:,} rows, the five profiles of the filed job --by modality, {reps}", five, base, n
    )
    return 0


if __name__ == "__main__":
    run_timed(main)
