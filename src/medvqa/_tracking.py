"""Experiment tracking: training logs and evaluation summaries to TensorBoard, Weights & Biases or MLflow.

``report_to`` takes one of :data:`REPORT_TO`. Training passes it to the ``transformers``
Trainer (TensorBoard events go to ``<stage folder>/tensorboard``); evaluation logs every
aggregate of every profile (``<profile>/<metric>/<subset>``, with ``:ci_low``, ``:ci_high``
and ``:n``) once, at step 0, to ``<output folder>/tensorboard/<name>`` or to the active
W&B / MLflow run. Only the main process of a launch logs. Each backend needs its own
package (``tensorboard``, ``wandb``, ``mlflow``); W&B and MLflow read their usual
environment variables (``WANDB_PROJECT``, ``WANDB_MODE=offline``, ``MLFLOW_TRACKING_URI``...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError

__all__ = ["REPORT_TO", "check_report_to", "log_scalars", "tracking_callbacks", "trainer_report_to"]

REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")
"""The tracking backends ``--report-to`` accepts."""

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_report_to(report_to: str) -> None:
    """Raise when ``report_to`` is unknown or its package is not installed (before any work starts).

    Raises:
        ValueError: Not one of :data:`REPORT_TO`.
        MedVQAError: The backend's package is missing (the message says what to install).
    """
    if report_to not in REPORT_TO:
        raise ValueError(f"report_to must be one of {', '.join(REPORT_TO)}; got {report_to!r}")
    if report_to == "none":
        return
    import importlib.util

    package = _PACKAGES[report_to]
    if importlib.util.find_spec(package) is None:
        raise MedVQAError(f"--report-to {report_to} needs the {package!r} package: pip install {package}")


def trainer_report_to(report_to: str) -> str:
    """The Trainer's own ``report_to``: TensorBoard is attached by :func:`tracking_callbacks` instead."""
    return "none" if report_to in ("none", "tensorboard") else report_to


def tracking_callbacks(report_to: str, log_dir: str | os.PathLike[str], *, main: bool) -> list[Any]:
    """Trainer callbacks for ``report_to`` (TensorBoard writing to ``log_dir`` on the main process)."""
    if report_to != "tensorboard" or not main:
        return []
    import importlib

    from torch.utils.tensorboard import SummaryWriter

    callback: Any = importlib.import_module("transformers.integrations").TensorBoardCallback
    return [callback(tb_writer=SummaryWriter(log_dir=str(log_dir)))]


def _clean(key: str) -> str:
    # MLflow accepts letters, digits, _ - . space : / only
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key)


def log_scalars(
    report_to: str, values: Mapping[str, Any], *, log_dir: str | os.PathLike[str], step: int = 0
) -> None:
    """Log the numeric ``values`` (``None`` and non-numbers are left out) to the backend.

    Args:
        report_to: One of :data:`REPORT_TO` (``none`` logs nothing).
        values: Name -> value.
        log_dir: The TensorBoard folder.
        step: The step recorded with the values.
    """
    check_report_to(report_to)
    numbers = {
        k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if report_to == "none" or not numbers:
        return
    if report_to == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(log_dir))
        try:
            for key, value in numbers.items():
                writer.add_scalar(key, value, global_step=step)
        finally:
            writer.close()
    elif report_to == "wandb":
        import importlib

        wandb: Any = importlib.import_module("wandb")
        if wandb.run is None:
            wandb.init()
        wandb.log(numbers, step=step)
    else:
        import importlib

        mlflow: Any = importlib.import_module("mlflow")
        mlflow.log_metrics({_clean(k): v for k, v in numbers.items()}, step=step)
