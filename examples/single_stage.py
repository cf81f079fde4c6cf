"""Table row "single-stage": VQA-RAD fine-tuning only (no stage 1); then evaluation.

The default recipe is the fair baseline (stage 2's settings on a fresh adapter);
``single_stage_as_run.yaml`` is the paper's own run (3 epochs, another instruction; the paper
does not name it, so the recipe assumes the stage-1 caption instruction: edit its
``instruction`` key to try another)::

    python examples/single_stage.py --config examples/single_stage.yaml
    python examples/single_stage.py --config examples/single_stage_as_run.yaml
    python examples/single_stage.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from _recipes import evaluate, load_recipe, parser, tiny_evaluation, tiny_stage
from medvqa.training import run_stage


def main(argv: Sequence[str] | None = None) -> Any:
    """Train the single stage (reused when finished) and score it."""
    args = parser(__doc__, "single_stage.yaml").parse_args(argv)
    recipe = load_recipe(args.config)
    assert recipe.stage2 is not None and recipe.evaluation is not None
    stage = recipe.stage2.replace(output_dir=str(args.output / recipe.stage2.name))
    ev = recipe.evaluation
    if args.tiny:
        stage, ev = tiny_stage(stage), tiny_evaluation(ev)
    result = run_stage(stage, progress=not args.no_progress)
    print(f"{result.name}: {result.global_step} steps, mean train loss {result.train_loss}")
    return evaluate(replace(ev, adapter=result.adapter_dir), args.output, progress=not args.no_progress)


if __name__ == "__main__":
    main(sys.argv[1:])
