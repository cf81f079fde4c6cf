"""Figure 3: the pretraining-size sweep (stage-1 sizes 0, 7K, 20K, 55K; nested subsets).

Each size trains stage 1 on that many ROCO pairs, continues the adapter in stage 2 and scores
the VQA-RAD test questions; one table (sweep.md/.csv/.json) and one plot (sweep.png)::

    python examples/size_sweep.py --config examples/size_sweep.yaml
    python examples/size_sweep.py --tiny
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from _recipes import TINY_EVAL_LIMIT, TINY_STAGE1_SIZE, load_recipe, parser, tiny_stage
from medvqa.training import run_sweep


def main(argv: Sequence[str] | None = None) -> Any:
    """Run the sweep (finished sizes are reused) and print its table."""
    args = parser(__doc__, "size_sweep.yaml").parse_args(argv)
    recipe = load_recipe(args.config)
    assert recipe.stage1 is not None and recipe.stage2 is not None and recipe.evaluation is not None
    s1, s2, ev = recipe.stage1, recipe.stage2, recipe.evaluation
    sizes: Sequence[int] = recipe.sweep_sizes or (0, 7_000, 20_000, 55_000)
    limit, n_boot = ev.limit, ev.n_boot
    if args.tiny:
        s1, s2 = tiny_stage(s1), tiny_stage(s2)
        sizes, limit, n_boot = (0, TINY_STAGE1_SIZE // 2, TINY_STAGE1_SIZE), TINY_EVAL_LIMIT, 0
    result = run_sweep(
        s1,
        s2,
        output_dir=args.output / "size_sweep",
        sizes=sizes,
        eval_limit=limit,
        profiles=tuple(ev.profiles),
        max_new_tokens=ev.max_new_tokens,
        batch_size=ev.batch_size,
        n_boot=n_boot,
        seed=ev.seed,
        progress=not args.no_progress,
    )
    print((args.output / "size_sweep" / "sweep.md").read_text(encoding="utf-8"))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
