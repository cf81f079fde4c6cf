"""Generation in its own process, for the distributed (torchrun) and kill/resume tests.

Usage: python generation_worker.py OUTPUT --limit N --batch-size B [--kill-rank R --kill-at-call K]

Prints ``GENERATED rank=<rank> rows=<rows>``: how many rows this process passed to
``model.generate`` (what it answered, as opposed to what it read back from earlier runs).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medvqa.data import load, sample_root
from medvqa.generation import generate_answers
from medvqa.models import tiny_idefics2
from medvqa.records import ImageRef, VQASample


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", type=Path)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--kill-rank", type=int, default=None)
    parser.add_argument("--kill-at-call", type=int, default=None)
    parser.add_argument("--bad", type=int, nargs="*", default=[], help="indices given an unreadable image")
    parser.add_argument("--on-bad-image", default="error")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    model, processor = tiny_idefics2(seed=0)
    samples = list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[: args.limit]
    for i in args.bad:
        broken = ImageRef(data=b"\x89PNG\r\n\x1a\n truncated", name=f"broken{i}.png")
        samples[i] = VQASample(**{**samples[i].__dict__, "image": broken})
    calls = {"n": 0, "rows": 0}
    generate = model.generate

    def counting(**kwargs: Any) -> Any:
        calls["n"] += 1
        if rank == args.kill_rank and calls["n"] == args.kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        calls["rows"] += int(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    model.generate = counting
    preds = generate_answers(
        model,
        processor,
        samples,
        batch_size=args.batch_size,
        output=args.output,
        progress=False,
        on_bad_image=args.on_bad_image,
    )
    assert [p.id for p in preds] == [s.id for i, s in enumerate(samples) if i not in args.bad]
    print(f"GENERATED rank={rank} rows={calls['rows']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
