"""Time and peak memory of ``medvqa score --profile all --by modality`` on 100,000 predictions.

Input: a synthetic prediction file written by this script (seeded): references drawn from the
official PathVQA test answers when ``../shared/data`` holds them (else from a built-in list),
half of them yes/no questions; predictions that repeat the reference, embed it in a sentence
with filler words, or answer something else; a ``modality`` field with three values. Filler
words are drawn from 2,000 made-up words, so that most open predictions are distinct.

Measurements, each as a subprocess whose wall time, CPU time (user + system) and peak resident
memory (``ru_maxrss`` of the child) are read by a small wrapper process (on a shared machine the
CPU time is the steadier figure):

1. the job: ``python -m medvqa score FILE --profile all --by modality -o OUT`` (five profiles,
   1,000 bootstrap replicates per interval, a breakdown by modality);
2. the baseline, measured in the same run: plain Python reading the same file and parsing
   every line with ``json.loads`` into a list of dicts (what any scorer must at least do).

Ratios are job / baseline; the absolute figures are printed beside them (targets on a current
CPU: at most 10 s and 400 MB).

    python benchmarks/bench_scoring_large.py [N_ROWS]
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
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


def _measure(cmd: list[str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.jsonl"
        write_input(path, n)
        base = _measure([sys.executable, "-c", _BASELINE, str(path)])
        job_cmd = [sys.executable, "-m", "medvqa", "score", str(path), "--profile", "all", "--by", "modality"]
        job = _measure([*job_cmd, "-o", str(Path(tmp) / "scores.txt")])
    what = f"medvqa score, {n:,} rows, --profile all --by modality, 1000 bootstrap replicates"
    emit(
        f"{what}: wall time",
        job["wall_s"],
        "s",
        n=n,
        baseline=base["wall_s"],
        ratio=job["wall_s"] / base["wall_s"],
        ratio_meaning="wall time / wall time of json.loads on every line (same file, same run); target <= 10 s",
    )
    emit(
        f"{what}: CPU time (user + system)",
        job["cpu_s"],
        "s",
        n=n,
        baseline=base["cpu_s"],
        ratio=job["cpu_s"] / base["cpu_s"],
        ratio_meaning="CPU time / CPU time of json.loads on every line (same file, same run)",
    )
    emit(
        f"{what}: peak memory",
        job["peak_mb"],
        "MB",
        n=n,
        baseline=base["peak_mb"],
        ratio=job["peak_mb"] / base["peak_mb"],
        ratio_meaning="peak RSS / peak RSS of json.loads on every line into a list (same run); target <= 400 MB",
    )
    return 0


if __name__ == "__main__":
    run_timed(main)
