"""Table row "two-stage, expert prompt": the expert-radiologist instruction at inference.

"You are an expert radiologist evaluating the case, answer the question succinctly based on the
medical image." replaces "Answer briefly.". The paper chose this prompt on the test set; report it
as exploratory.

Run with the recipe's defaults (Idefics2-8B, QLoRA, the real data), or on the tiny model::

    python examples/expert_prompt.py --config examples/expert_prompt.yaml
    python examples/expert_prompt.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from _recipes import run_evaluation_recipe


def main(argv: Sequence[str] | None = None) -> Any:
    """Run this table row; returns its scores."""
    return run_evaluation_recipe(__doc__, "expert_prompt.yaml", argv, needs_two_stage=True)


if __name__ == "__main__":
    main(sys.argv[1:])
