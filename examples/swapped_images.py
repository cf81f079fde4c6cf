"""Table row "two-stage, swapped images": every question gets another question's image.

The paper drew a random different index, unseeded, so a question could get the same image through
another question about it. Here the swap is a seeded derangement in which no question keeps an
image with the same content (medvqa.ablations.SwapImages).

Run with the recipe's defaults (Idefics2-8B, QLoRA, the real data), or on the tiny model::

    python examples/swapped_images.py --config examples/swapped_images.yaml
    python examples/swapped_images.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from _recipes import run_evaluation_recipe


def main(argv: Sequence[str] | None = None) -> Any:
    """Run this table row; returns its scores."""
    return run_evaluation_recipe(__doc__, "swapped_images.yaml", argv, needs_two_stage=True)


if __name__ == "__main__":
    main(sys.argv[1:])
