"""Table row "base": Idefics2-8B without fine-tuning on the first 400 VQA-RAD test questions.

Run with the recipe's defaults (Idefics2-8B, QLoRA, the real data), or on the tiny model::

    python examples/base.py --config examples/base.yaml
    python examples/base.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from _recipes import run_evaluation_recipe


def main(argv: Sequence[str] | None = None) -> Any:
    """Run this table row; returns its scores."""
    return run_evaluation_recipe(__doc__, "base.yaml", argv, needs_two_stage=False)


if __name__ == "__main__":
    main(sys.argv[1:])
