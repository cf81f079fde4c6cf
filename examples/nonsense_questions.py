"""Nonsense questions (Med-HALT reasoning_fake) with medical images, scored for abstention.

The paper asked a handful of made-up questions and did not score them. Here every question of
the set gets a VQA-RAD test image (seeded pairing) and the answers of the base and the two-stage
model are scored by how often they abstain ("I do not know")::

    python examples/nonsense_questions.py --config examples/nonsense_questions.yaml
    python examples/nonsense_questions.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _recipes import HERE, evaluate, load_recipe, parser, tiny_evaluation, two_stage
from medvqa.ablations import NonsenseQuestions, abstention
from medvqa.data import load, sample_root


def main(argv: Sequence[str] | None = None) -> Any:
    """Answer the nonsense questions with the base and the two-stage model; print the abstention rates."""
    args = parser(__doc__, "nonsense_questions.yaml").parse_args(argv)
    recipe = load_recipe(args.config)
    assert recipe.evaluation is not None
    ev = recipe.evaluation
    pool_spec = dict(recipe.extra.get("image_pool", {"dataset": "vqa_rad", "data": None, "split": "test"}))
    if args.tiny:
        ev = tiny_evaluation(ev)
        pool_spec["data"] = None
        run = two_stage(HERE / "two_stage.yaml", args.output, tiny=True, progress=not args.no_progress)
        ev = replace(ev, adapter=run.adapter_dir)
    elif ev.adapter is None or not Path(ev.adapter).is_dir():
        raise FileNotFoundError(f"adapter {ev.adapter} not found: run examples/two_stage.py first")
    bundled = {"vqa_rad": "vqa_rad", "slake": "slake"}
    pool_data = pool_spec["data"] or sample_root() / bundled[pool_spec["dataset"]]
    pool = [
        s.image
        for s in load(pool_spec["dataset"], pool_data, split=pool_spec["split"])
        if s.image is not None
    ]
    questions = list(load("med_halt", ev.data or sample_root() / "med_halt", split=ev.split))[: ev.limit]
    with_options = bool(recipe.extra.get("with_options", True))
    samples = NonsenseQuestions(pool=tuple(pool), seed=ev.seed, with_options=with_options)(questions)
    rates = {}
    for label, adapter in (("base", None), ("two_stage", ev.adapter)):
        result = evaluate(
            replace(ev, name=f"nonsense_{label}", adapter=adapter),
            args.output,
            progress=not args.no_progress,
            samples=samples,
        )
        rates[label] = abstention(list(result.predictions), name=label, seed=ev.seed)
        r = rates[label]
        print(f"{label}: abstained on {r.abstained} of {r.n} nonsense questions (rate {r.rate})")
    return rates


if __name__ == "__main__":
    main(sys.argv[1:])
