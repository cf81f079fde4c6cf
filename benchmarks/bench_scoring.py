"""Scoring speed: the official PathVQA test answers under every profile, and `medvqa score` start-up.

Data: ``../shared/data/pathvqa/official_qa/pvqa_test.json`` (6,761 question-answer pairs; each
``labelf.pvqa`` entry holds one ``{answer: 1}``). Two simple predictions: the most frequent
answer of ``pvqa_train.json`` for every question, and the test answers shuffled with a fixed
seed. Measurements:

1. each profile's :func:`medvqa.metrics.evaluate` on the 6,761 pairs (no bootstrap, and the
   strict profile with 1,000 bootstrap replicates);
2. the ``paper`` profile against a plain per-item implementation with NLTK
   (``NLTKWordTokenizer`` + ``sentence_bleu``, as the paper's script computes it) in the same
   run: the speed-up, with every per-item F1, BLEU-1 and containment value asserted identical;
3. all six profiles in one process on 451 items (the size of VQA-RAD's test split), without
   and with 1,000 bootstrap replicates, against the ``lmms_eval`` profile alone (the cheapest
   rule: one string comparison) as a baseline measured in the same run; the target is under
   a second without bootstrap;
4. the wall time of ``python -m medvqa score`` on a 451-item file (default profile, and all
   profiles) as a subprocess, against ``python -c pass``, and a check with ``-X importtime``
   that it imports neither torch, transformers nor NLTK.

Token caches are cleared before every timed run of the library, so repeated runs do not
profit from earlier ones.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from _common import REPO_ROOT, SHARED_DATA, best_of, emit, run_timed, skip

OFFICIAL = SHARED_DATA / "pathvqa" / "official_qa"


def _pairs(path: Path) -> list[tuple[str, str]]:
    out = []
    for record in json.loads(path.read_text(encoding="utf-8")):
        for question, label in zip(record["sentf"]["pvqa"], record["labelf"]["pvqa"]):
            [answer] = list(label)
            out.append((question, str(answer)))
    return out


def _clear_caches() -> None:
    from medvqa import answers
    from medvqa.metrics import _tokenize

    for fn in (
        _tokenize.treebank_tokenize,
        _tokenize.whitespace_tokenize,
        answers.normalize_strict,
        answers.normalize_vqav2,
        answers.normalize_lmms_eval,
    ):
        fn.cache_clear()


def _nltk_paper(preds: list) -> list[tuple[float, float, float]]:
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.translate.bleu_score import sentence_bleu

    tok = NLTKWordTokenizer()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in preds:
            truth = p.reference.lower()
            pred = p.prediction.lower()
            if "answer:" in pred:
                pred = pred.split("answer:", 1)[1].split("question:", 1)[0]
            pred = pred.replace("assistant:", "").strip()
            tt, pt = tok.tokenize(truth), tok.tokenize(pred)
            common = set(tt) & set(pt)
            if common:
                precision, recall = len(common) / len(pt), len(common) / len(tt)
                f1 = 2 * precision * recall / (precision + recall)
            else:
                f1 = 0.0
            bleu = float(sentence_bleu([tt], pt, weights=(1, 0, 0, 0)))
            out.append((1.0 if truth in pred else 0.0, f1, bleu))
    return out


def main() -> int:
    if not (OFFICIAL / "pvqa_test.json").is_file():
        skip(f"PathVQA official QA not found under {OFFICIAL}")
        return 0
    try:
        import nltk  # noqa: F401
    except ImportError:
        skip("nltk is not installed (needed for the reference implementation)")
        return 0
    from medvqa.metrics import PROFILES, evaluate
    from medvqa.records import Prediction, infer_answer_type

    test = _pairs(OFFICIAL / "pvqa_test.json")
    train = _pairs(OFFICIAL / "pvqa_train.json")
    top = Counter(a for _, a in train).most_common(1)[0][0]
    answers = [a for _, a in test]
    shuffled = list(answers)
    random.Random(0).shuffle(shuffled)
    n = len(test)
    runs = {
        f"most frequent train answer ({top!r})": [top] * n,
        "shuffled test answers (seed 0)": shuffled,
    }
    for label, outputs in runs.items():
        preds = [
            Prediction(f"pvqa:test:{i}", q, a, o, infer_answer_type(a))
            for i, ((q, a), o) in enumerate(zip(test, outputs))
        ]
        for name in PROFILES:

            def run(name: str = name, preds: list = preds) -> object:
                _clear_caches()
                return evaluate(preds, profile=name, n_boot=0)

            seconds, result = best_of(run, repeat=3)
            emit(
                f"evaluate {name}, {label}",
                seconds,
                "s",
                n=n,
                headline={
                    k: round(a.value, 4)
                    for k, a in list(result.aggregates.items())[:3]
                    if a.value is not None
                },
            )

        def strict_boot(preds: list = preds) -> object:
            _clear_caches()
            return evaluate(preds, profile="strict", n_boot=1000, seed=0)

        seconds, _ = best_of(strict_boot, repeat=1)
        emit(f"evaluate strict with 1000 bootstrap replicates, {label}", seconds, "s", n=n)

        # paper profile vs a plain per-item NLTK implementation, identical results asserted
        def ours(preds: list = preds) -> object:
            _clear_caches()
            return evaluate(preds, profile="paper", n_boot=0)

        t_ours, result = best_of(ours, repeat=3)
        t_nltk, reference = best_of(lambda preds=preds: _nltk_paper(preds), repeat=2)
        for row, (c, f1, bleu) in zip(result.per_item, reference):
            assert row["containment"] == c and row["f1"] == f1 and row["bleu1"] == bleu, (row, c, f1, bleu)
        emit(
            f"paper profile vs per-item NLTK, {label}",
            t_ours,
            "s",
            n=n,
            baseline=t_nltk,
            ratio=t_nltk / t_ours,
            ratio_meaning="speed-up (NLTK time / medvqa time); results identical",
        )

    # every profile, in process, on 451 items
    preds451 = [
        Prediction(f"pvqa:test:{i}", q, a, f"The answer is {o}.", infer_answer_type(a))
        for i, ((q, a), o) in enumerate(zip(test[:451], shuffled))
    ]
    for n_boot in (0, 1000):

        def all_profiles(n_boot: int = n_boot) -> object:
            _clear_caches()
            return [evaluate(preds451, profile=name, n_boot=n_boot) for name in PROFILES]

        def cheapest(n_boot: int = n_boot) -> object:
            _clear_caches()
            return evaluate(preds451, profile="lmms_eval", n_boot=n_boot)

        t_all, _ = best_of(all_profiles, repeat=3)
        t_one, _ = best_of(cheapest, repeat=3)
        emit(
            f"evaluate all {len(PROFILES)} profiles, 451 items, {n_boot} bootstrap replicates",
            t_all,
            "s",
            n=451,
            baseline=t_one,
            ratio=t_all / t_one,
            ratio_meaning="all profiles / lmms_eval alone (target without bootstrap: under 1 s in all)",
        )

    # `medvqa score` start-up and run on a 451-item file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run451.jsonl"
        rng = random.Random(1)
        with path.open("w", encoding="utf-8") as fh:
            for i, (q, a) in enumerate(test[:451]):
                row = Prediction(f"pvqa:test:{i}", q, a, rng.choice(answers), infer_answer_type(a)).to_dict()
                fh.write(json.dumps(row) + "\n")
        env_cmd = [sys.executable, "-m", "medvqa", "score", str(path), "--profile", "all"]

        def cli() -> None:
            subprocess.run(env_cmd, check=True, capture_output=True, cwd=REPO_ROOT)

        def cli_default() -> None:
            subprocess.run(env_cmd[:5], check=True, capture_output=True, cwd=REPO_ROOT)

        def bare() -> None:
            subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)

        t_cli, _ = best_of(cli, repeat=5)
        t_bare, _ = best_of(bare, repeat=5)
        t_default, _ = best_of(cli_default, repeat=5)
        emit(
            "medvqa score, 451 items, default strict profile, 1000 bootstrap replicates (subprocess wall time)",
            t_default,
            "s",
            n=451,
            baseline=t_bare,
            ratio=t_default / t_bare,
            ratio_meaning="wall time / `python -c pass` wall time",
        )
        emit(
            f"medvqa score, 451 items, all {len(PROFILES)} profiles, 1000 bootstrap replicates (subprocess wall time)",
            t_cli,
            "s",
            n=451,
            baseline=t_bare,
            ratio=t_cli / t_bare,
            ratio_meaning="wall time / `python -c pass` wall time",
        )
        check = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "medvqa", "score", str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        heavy = sorted(
            {
                m
                for m in ("torch", "transformers", "nltk")
                if f" {m}\n" in check.stderr or f"| {m}\n" in check.stderr
            }
        )
        assert not heavy, f"medvqa score imported {heavy}"
        emit("medvqa score imports torch/transformers/nltk", 0.0, "modules", n=451, note="none imported")
    return 0


if __name__ == "__main__":
    run_timed(main)
