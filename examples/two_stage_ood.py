"""Table row "two-stage, OOD": the two-stage model on the first 400 PathVQA test questions.

Run with the recipe's defaults (Idefics2-8B, QLoRA, the real data), or on the tiny model::

    python examples/two_stage_ood.py --config examples/two_stage_ood.yaml
    python examples/two_stage_ood.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from _recipes import run_evaluation_recipe


def main(argv: Sequence[str] | None = None) -> Any:
    """Run this table row; returns its scores."""
    return run_evaluation_recipe(__doc__, "two_stage_ood.yaml", argv, needs_two_stage=True)


if __name__ == "__main__":
    main(sys.argv[1:])
