"""Table row "two-stage": stage 1 on ROCO captions, stage 2 on VQA-RAD, one LoRA adapter; then evaluation.

Run with the recipe's defaults (Idefics2-8B, QLoRA, the real data), or on the tiny model::

    python examples/two_stage.py --config examples/two_stage.yaml
    python examples/two_stage.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from _recipes import evaluate, load_recipe, parser, tiny_evaluation, two_stage


def main(argv: Sequence[str] | None = None) -> Any:
    """Train both stages (reused when finished) and score the result."""
    args = parser(__doc__, "two_stage.yaml").parse_args(argv)
    recipe = load_recipe(args.config)
    run = two_stage(args.config, args.output, tiny=args.tiny, progress=not args.no_progress)
    for r in (run.stage1, run.stage2):
        if r is not None:
            print(f"{r.name}: {r.global_step} steps, mean train loss {r.train_loss}")
    assert recipe.evaluation is not None
    ev = tiny_evaluation(recipe.evaluation) if args.tiny else recipe.evaluation
    return evaluate(replace(ev, adapter=run.adapter_dir), args.output, progress=not args.no_progress)


if __name__ == "__main__":
    main(sys.argv[1:])
