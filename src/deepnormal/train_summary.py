"""What the train stage hands to evaluate: data/train/summary.json and history.csv, as typed
records with their JSON and CSV forms. No torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from deepnormal import paths
from deepnormal.errors import DeepnormalError

SUMMARY_FILE, HISTORY_FILE = paths.TRAIN_SUMMARY.name, paths.HISTORY.name


@dataclass(frozen=True)
class TrainSummary:
    run_id: str | None  # the MLflow run (None: trained with tracking.enabled false)
    lr: float
    lr_rule: str
    best_epoch: int  # the epoch whose kept ensemble the checkpoint holds
    best_val_nll: float
    member_best_epochs: list[int]  # each member's own kept epoch
    epochs_run: int
    stopped_early: bool
    budget: dict[str, int]  # budget.Budget.as_dict(): batch, steps an epoch, epochs, patience
    sigma_scale: float
    device: str
    # model.distribution auto's trial (family_trial.FamilyTrial.as_dict()); None: no trial.
    family_trial: dict | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


@dataclass(frozen=True)
class TrainingRecord:
    """The train stage's summary and its per-epoch history (train_nll, val_nll,
    val_nll_kept, lr)."""

    summary: TrainSummary
    history: list[dict]

    def write(self, directory: Path) -> None:
        pd.DataFrame(self.history).to_csv(directory / HISTORY_FILE, index=False)
        (directory / SUMMARY_FILE).write_text(self.summary.to_json())

    @classmethod
    def read(cls, directory: Path) -> TrainingRecord:
        try:
            summary = TrainSummary(**json.loads((directory / SUMMARY_FILE).read_text()))
            history = pd.read_csv(directory / HISTORY_FILE).to_dict("records")
        except (OSError, ValueError, TypeError) as error:
            raise DeepnormalError(f"training outputs in {directory} are missing or unreadable "
                                  f"({error}); run the train stage") from None
        return cls(summary, history)
