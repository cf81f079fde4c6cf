"""What a training stage leaves behind: :class:`StageResult`, :class:`TwoStageResult`, ``result.json``.

A stage folder's ``result.json`` is written last, so its presence means the stage finished;
:func:`load_result` reads it back for a rerun of the same config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._io import read_json
from medvqa.training._config import StageConfig

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class StageResult:
    """What a finished stage produced (also written as ``result.json`` in its folder).

    Attributes:
        name: The stage name (``StageConfig.name``).
        config: The stage config.
        output_dir: The stage folder.
        adapter_dir: The trained adapter's folder.
        global_step: Optimizer steps run in total (across resumes).
        epochs: Epochs completed (fractional when ``max_steps`` stopped the stage).
        train_samples: Samples in the training set.
        eval_samples: Samples in the validation set (0 without validation).
        train_loss: The mean training loss per step over the whole stage, from the logged
            loss history (resumes included: the same as an uninterrupted run).
        eval_loss: The last validation loss, or ``None``.
        runtime_s: Wall time of the last (possibly resumed) run, in seconds.
        precision: The precision actually used (a CPU runs fp32 whatever was asked).
        world_size: Number of processes.
        resumed_from: The checkpoint the run resumed from, or ``None``.
        loss_history: Loss rows (``stage``, ``step``, ``epoch``, ``loss`` and/or ``eval_loss``, ...).
        reused: ``True`` when the stage had already finished and was not run again.
        skipped_rows: Rows the data loader skipped because ``data_options`` asked it to
            (for example ``on_missing_image="skip"``); 0 when samples were passed in.
        bad_images: Samples left out because their image cannot be decoded
            (``on_bad_image="skip"``): ``id``, ``image`` and ``error`` of each.
    """

    name: str
    config: StageConfig
    output_dir: str
    adapter_dir: str
    global_step: int
    epochs: float
    train_samples: int
    eval_samples: int
    train_loss: float | None
    eval_loss: float | None
    runtime_s: float
    precision: str
    world_size: int = 1
    resumed_from: str | None = None
    loss_history: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    reused: bool = False
    skipped_rows: int = 0
    bad_images: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (``config`` as its own dict)."""
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "fingerprint": self.config.fingerprint(),
            "output_dir": self.output_dir,
            "adapter_dir": self.adapter_dir,
            "global_step": self.global_step,
            "epochs": self.epochs,
            "train_samples": self.train_samples,
            "eval_samples": self.eval_samples,
            "train_loss": self.train_loss,
            "eval_loss": self.eval_loss,
            "runtime_s": self.runtime_s,
            "precision": self.precision,
            "world_size": self.world_size,
            "resumed_from": self.resumed_from,
            "skipped_rows": self.skipped_rows,
            "skipped_bad_images": len(self.bad_images),
            "bad_images": [dict(b) for b in self.bad_images],
            "loss_history": [dict(r) for r in self.loss_history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, reused: bool = False) -> StageResult:
        """Read back :meth:`to_dict` output."""
        return cls(
            name=str(data["name"]),
            config=StageConfig.from_dict(data["config"]),
            output_dir=str(data["output_dir"]),
            adapter_dir=str(data["adapter_dir"]),
            global_step=int(data["global_step"]),
            epochs=float(data["epochs"]),
            train_samples=int(data["train_samples"]),
            eval_samples=int(data.get("eval_samples", 0)),
            train_loss=None if data.get("train_loss") is None else float(data["train_loss"]),
            eval_loss=None if data.get("eval_loss") is None else float(data["eval_loss"]),
            runtime_s=float(data["runtime_s"]),
            precision=str(data["precision"]),
            world_size=int(data.get("world_size", 1)),
            resumed_from=data.get("resumed_from"),
            loss_history=tuple(data.get("loss_history", ())),
            reused=reused,
            skipped_rows=int(data.get("skipped_rows", 0)),
            bad_images=tuple(data.get("bad_images", ())),
        )


@dataclass(frozen=True)
class TwoStageResult:
    """The two stages of one run (``stage1`` is ``None`` when stage 1 was skipped, size 0)."""

    stage1: StageResult | None
    stage2: StageResult
    output_dir: str

    @property
    def adapter_dir(self) -> str:
        """The final adapter (stage 2's)."""
        return self.stage2.adapter_dir

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "output_dir": self.output_dir,
            "adapter_dir": self.adapter_dir,
            "stage1": None if self.stage1 is None else self.stage1.to_dict(),
            "stage2": self.stage2.to_dict(),
        }


def load_result(out: Path, config: StageConfig) -> StageResult | None:
    """The finished stage of folder ``out`` (``reused=True``), or ``None`` when it has not finished.

    Raises:
        MedVQAError: The folder finished another config, or its adapter is missing.
    """
    path = out / RESULT_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if data.get("fingerprint") != config.fingerprint():
        raise MedVQAError(
            f"{path} records a finished stage with a different config (fingerprint {data.get('fingerprint')} "
            f"vs {config.fingerprint()}); use another output folder, or delete it to train again"
        )
    if not (Path(data["adapter_dir"]) / "adapter_config.json").is_file():
        raise MedVQAError(
            f"{path} names adapter {data['adapter_dir']}, which is missing; delete {path} to retrain"
        )
    return StageResult.from_dict(data, reused=True)
