"""A stage run in its own process, for the resume (SIGKILL) and distributed (torchrun) tests.

Usage: python training_worker.py DATA_DIR CONFIG_JSON [--kill-at-step N]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medvqa.training import StageConfig, run_stage
from medvqa.training._callbacks import StepCallback
from tests.integration.training_helpers import vqa_samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--kill-at-step", type=int, default=None)
    args = parser.parse_args()
    cfg = StageConfig.load(args.config)
    callbacks = []
    if args.kill_at_step is not None:

        def kill(step: int) -> None:
            if step == args.kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)

        callbacks.append(StepCallback(kill))
    result = run_stage(
        cfg, train_samples=vqa_samples(args.data_dir, args.n), callbacks=callbacks, progress=False
    )
    print(f"RESULT rank={os.environ.get('RANK', '0')} steps={result.global_step} loss={result.train_loss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
