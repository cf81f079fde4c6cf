"""The human-evaluation sheet: the two-stage answers in a CSV for an expert to mark correct or wrong.

Rows are shuffled with a seed so that the reviewer does not see them grouped; score a filled
sheet with ``medvqa review``::

    python examples/human_evaluation_sheet.py --config examples/human_evaluation_sheet.yaml
    python examples/human_evaluation_sheet.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _recipes import HERE, load_recipe, parser
from medvqa._io import read_jsonl
from medvqa.records import Prediction
from medvqa.review import export_review_sheet


def main(argv: Sequence[str] | None = None) -> Any:
    """Write the review sheet from a prediction file."""
    args = parser(__doc__, "human_evaluation_sheet.yaml").parse_args(argv)
    recipe = load_recipe(args.config)
    predictions = Path(
        recipe.extra.get("predictions", args.output / "evaluations" / "two_stage.predictions.jsonl")
    )
    if args.tiny:
        import two_stage

        two_stage.main(
            ["--tiny", "--output", str(args.output), *(["--no-progress"] if args.no_progress else [])]
        )
        predictions = args.output / "evaluations" / "two_stage.predictions.jsonl"
    if not predictions.is_file():
        raise FileNotFoundError(f"{predictions} not found: run examples/two_stage.py first")
    rows = [Prediction.from_dict(obj, file=str(predictions), line=n) for n, obj in read_jsonl(predictions)]
    sheet = export_review_sheet(
        rows,
        args.output / "human_evaluation_sheet.csv",
        shuffle_seed=int(recipe.extra.get("shuffle_seed", 0)),
    )
    print(f"wrote {sheet} ({len(rows)} answers to review)")
    return sheet


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main(sys.argv[1:])
