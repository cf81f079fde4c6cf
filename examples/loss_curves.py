"""Figure 4: the training loss of both stages of the two-stage run, as a PNG and as data.

python examples/loss_curves.py --config examples/loss_curves.yaml
python examples/loss_curves.py --tiny
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _recipes import HERE, load_recipe, parser, two_stage
from medvqa.plots import plot_loss_curves


def main(argv: Sequence[str] | None = None) -> Any:
    """Read the loss histories of a finished two-stage run and plot them."""
    args = parser(__doc__, "loss_curves.yaml").parse_args(argv)
    recipe = load_recipe(args.config)
    run_dir = Path(recipe.extra.get("run", args.output / "two_stage"))
    if args.tiny:
        run_dir = Path(
            two_stage(
                HERE / "two_stage.yaml", args.output, tiny=True, progress=not args.no_progress
            ).output_dir
        )
    summary_file = run_dir / "two_stage.json"
    if not summary_file.is_file():
        raise FileNotFoundError(f"{summary_file} not found: run examples/two_stage.py first")
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    histories = {
        s["name"]: s["loss_history"] for s in (summary["stage1"], summary["stage2"]) if s is not None
    }
    png = plot_loss_curves(
        histories, args.output / "loss_curves.png", title="Training loss, stage 1 then stage 2"
    )
    print(f"wrote {png} and {png.with_suffix('.json')}")
    return png


if __name__ == "__main__":
    main(sys.argv[1:])
