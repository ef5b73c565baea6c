"""The tune stage's search: Optuna over model and training params, scored on the validation NLL.

One study per `tune.study_name` in `tune.storage` (default: optuna.db, SQLite, at the
repository root), so an interrupted search resumes where it stopped, and several workers
(processes or machines pointed at one database) share a study. A seeded TPE sampler picks the
trials; Optuna's median pruner stops a trial whose best validation NLL so far trails the
median of earlier trials at the same epoch. A trial that fails (a diverging loss, a value
combination params.yaml refuses) is recorded as failed and the search goes on.

Each trial trains the stage's own model (training.fit, the real Lightning Trainer) on the
training split with the trial's values on top of params.yaml, and returns its best
validation NLL; the test split is never used. With tracking, each trial is a nested MLflow
run under one parent run per study.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytorch_lightning as pl
from pydantic import ValidationError

from deepnormal import stores, tracking
from deepnormal.config import TUNABLE, Params
from deepnormal.errors import SEARCH_INTERRUPTED, DeepnormalError, first_line
from deepnormal.inference import load_model
from deepnormal.prepared import Split
from deepnormal.search_space import SearchSpace
from deepnormal.training import MONITOR, find_lr, fit

STORE_FILE = "optuna.db"
# Trial attributes also shown as tags of the trial's MLflow run.
ERROR_ATTR, BEST_EPOCH_ATTR, PRUNED_AT_ATTR = "error", "best_epoch", "pruned_at_epoch"
DEFAULTS_ATTR = "params_yaml"  # the trial of params.yaml's own values
# Not a tag: each validation point's NLL, for the comparison with params.yaml's trial.
POINTS_ATTR, MAX_POINTS = "val_nll_points", 20_000
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # a study attribute: the search's MLflow run
# A worker that stops sending heartbeats for this long has its RUNNING trial marked failed.
HEARTBEAT_S, GRACE_S = 30, 120

optuna.logging.set_verbosity(optuna.logging.ERROR)  # the stage prints one line per trial


def storage_url(params: Params) -> str:
    """tune.storage, or the default SQLite file. Shown through stores.redacted (no password)."""
    return params.tune.storage or f"sqlite:///{stores.repo_root() / STORE_FILE}"


def study_name(params: Params, train: Split, val: Split) -> str:
    """tune.study_name plus a digest of what the trials depend on (the splits, the search
    space, seed and pruning, the params every trial starts from): a rerun with the same
    inputs resumes its study; changed data or settings start a new one."""
    digest = hashlib.sha256()
    for split in (train, val):
        digest.update(pd.util.hash_pandas_object(split.frame, index=False).to_numpy().tobytes()
                      + split.target.tobytes())
    t = params.tune
    settings = {"space": t.space, "seed": t.seed, "prune": t.prune,
                "base": params.flat(tuple(TUNABLE) + ("compute",)),
                "min_category_rows": params.data.min_category_rows}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"{t.study_name}-{digest.hexdigest()[:10]}"


def open_study(params: Params, name: str) -> optuna.Study:
    """The study, created or resumed. The sampler is seeded with tune.seed plus the trials
    the study already holds, so a fresh search repeats its sequence exactly and a resumed
    one does not replay the trials it has already run."""
    t = params.tune
    url = storage_url(params)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" (and Optuna's way)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                engine_kwargs={"connect_args": stores.connect_args(url)})
        existing = len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:  # no such study yet
        existing = 0
    except Exception as error:  # SQLAlchemy's errors for a bad URL or an unreachable server
        raise DeepnormalError(f"cannot use the Optuna storage {stores.redacted(url)}: "
                              f"{first_line(error, 300)}; check tune.storage") from None
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
              if t.prune else optuna.pruners.NopPruner())
    return optuna.create_study(
        study_name=name, storage=storage, direction="minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=t.seed + existing), pruner=pruner)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


class PruneOnValNll(pl.Callback):
    """Reports the best validation NLL so far to the trial after each validation pass and
    stops the trial when the pruner says so. (optuna-integration's PyTorchLightningPruning-
    Callback is written for the `lightning` package, not `pytorch_lightning`.)"""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.best = math.inf

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.best = min(self.best, float(trainer.callback_metrics[MONITOR]))
        if not math.isfinite(self.best):
            return  # divergence: fit() raises with its own message
        self.trial.report(self.best, trainer.current_epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_AT_ATTR, trainer.current_epoch)
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def objective(params: Params, train: Split, val: Split,
              space: SearchSpace) -> Callable[[optuna.Trial], float]:
    def run(trial: optuna.Trial) -> float:
        values = {} if trial.user_attrs.get(DEFAULTS_ATTR) else space.suggest(trial)
        try:
            trial_params = params.with_values(values)
        except ValidationError as error:  # e.g. a searched lr beyond lr_find's bounds
            reason = first_line(error.errors()[0]["msg"]).removeprefix("Value error, ")
            raise _failed(trial, f"params.yaml refuses these values: {reason}") from None
        try:
            lr = find_lr(trial_params, train)[2].lr  # lr_find.fixed_lr, or the range test's
            with tempfile.TemporaryDirectory(prefix="deepnormal-trial-") as out:
                result = fit(trial_params, train, val, lr, Path(out), progress=False,
                             callbacks=[PruneOnValNll(trial)])
                if len(val) <= MAX_POINTS:
                    points = nll_points(load_model(result.checkpoint), val)
                    trial.set_user_attr(POINTS_ATTR, [round(float(v), 5) for v in points])
        except SystemExit:
            # Lightning turns Ctrl-C inside fit into SystemExit(1); Optuna marks a trial
            # FAIL for KeyboardInterrupt but would leave it RUNNING for SystemExit.
            raise KeyboardInterrupt from None
        except DeepnormalError as error:
            raise _failed(trial, str(error)) from None
        trial.set_user_attr(BEST_EPOCH_ATTR, result.best_epoch)
        return result.best_val_nll

    return run


def nll_points(model, split: Split) -> np.ndarray:
    """Each validation point's NLL as the trial's value scores it: before the variance
    calibration (fitted on these same points), so their mean is the trial's value."""
    return model.predict(split.frame, calibrated=False).distribution.nll_points(split.target)


def _failed(trial: optuna.Trial, message: str) -> DeepnormalError:
    trial.set_user_attr(ERROR_ATTR, message[:500])
    return DeepnormalError(message)


@dataclass(frozen=True)
class Winner:
    trial: int
    val_nll: float
    values: dict[str, object]  # empty: params.yaml's own values won
    why: str


def choose(study: optuna.Study, space: SearchSpace) -> Winner:
    """The trial the pipeline should train. The search starts with params.yaml's own values
    (its first trial); another trial replaces them only when it is better on the validation
    split by more than twice the standard error of the per-point difference, because on a
    small validation split the best of many trials is often best by luck (measured on the
    quality benchmark's tables: taking the plain minimum lost to the defaults on test)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = min(complete, key=lambda trial: trial.value)
    baseline = next((t for t in complete if t.user_attrs.get(DEFAULTS_ATTR)), None)
    values = space.values(best.params)
    if baseline is None or best.number == baseline.number:
        why = "the lowest validation NLL" + (" (params.yaml's own values)" if baseline else "")
        return Winner(best.number, best.value, {} if baseline else values, why)
    if POINTS_ATTR not in best.user_attrs or POINTS_ATTR not in baseline.user_attrs:
        return Winner(best.number, best.value, values, "the lowest validation NLL")
    gain = np.subtract(best.user_attrs[POINTS_ATTR], baseline.user_attrs[POINTS_ATTR])
    error = gain.std(ddof=1) / math.sqrt(len(gain))
    margin = f"{gain.mean():+.4f} +- {error:.4f} nats per point against trial {baseline.number}"
    if gain.mean() + 2 * error < 0:
        return Winner(best.number, best.value, values,
                      f"the lowest validation NLL, better than params.yaml's values: {margin}")
    return Winner(baseline.number, baseline.value, {},
                  f"params.yaml's values (trial {baseline.number}) kept: the best trial, "
                  f"{best.number}, is within noise of them ({margin})")


def search(study: optuna.Study, params: Params, train: Split, val: Split,
           callbacks: list[Callable] = ()) -> Winner:
    """Run trials until the study holds tune.trials finished ones (or tune.timeout_minutes
    pass); returns the trial the pipeline should train (`choose`)."""
    t = params.tune
    space = SearchSpace.checked(t.space, TUNABLE)
    if not study.trials:  # the first trial: params.yaml as it is
        study.enqueue_trial({}, user_attrs={DEFAULTS_ATTR: True})
    remaining = t.trials - len(finished(study))
    if remaining > 0:
        # Other workers may be adding trials to the same study: stop at the total.
        stop = optuna.study.MaxTrialsCallback(t.trials, states=(
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
        study.optimize(objective(params, train, val, space), n_trials=remaining,
                       timeout=t.timeout_minutes * 60 if t.timeout_minutes else None,
                       catch=(DeepnormalError,), callbacks=[*callbacks, stop])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        errors = [trial.user_attrs[ERROR_ATTR] for trial in study.trials
                  if ERROR_ATTR in trial.user_attrs]
        raise DeepnormalError("no trial of the search completed" + (
            f"; the first failure: {errors[0]}" if errors else "") + "; check tune.space")
    return choose(study, space)


def progress_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A study callback: one line per trial."""
    state = trial.state.name.lower()
    if trial.state == optuna.trial.TrialState.COMPLETE:
        what = f"val_nll {trial.value:.4f} (best epoch {trial.user_attrs.get(BEST_EPOCH_ATTR)})"
    elif trial.state == optuna.trial.TrialState.PRUNED:
        what = f"pruned at epoch {trial.user_attrs.get(PRUNED_AT_ATTR)}"
    else:
        what = f"failed: {trial.user_attrs.get(ERROR_ATTR, state)}"
    try:
        best = f"; best so far: trial {study.best_trial.number}, {study.best_value:.4f}"
    except ValueError:  # no completed trial yet
        best = ""
    values = ", ".join(f"{key}={value}" for key, value in trial.params.items()) or (
        "params.yaml's values")
    print(f"trial {trial.number:>3} {what} [{values}]{best}  ({time.strftime('%H:%M:%S')})",
          flush=True)


@contextmanager
def search_run(study: optuna.Study, experiment_id: str, params: Params):
    """The study's MLflow parent run as the active run: created on the study's first start,
    reopened when it resumes; KILLED on Ctrl-C, FAILED on an error."""
    import mlflow

    with stores.store_lock():  # workers starting together: one creates the run
        parent = study.user_attrs.get(PARENT_RUN_ATTR)
        if parent is None:
            run = mlflow.start_run(experiment_id=experiment_id, run_name=study.study_name,
                                   tags=tracking.run_tags() | {"deepnormal.kind": "tune"})
            study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
            mlflow.log_params(params.flat(("tune",)) | {"tune.study": study.study_name,
                                                         "tune.storage": stores.redacted(
                                                             storage_url(params))})
        else:
            run = mlflow.start_run(run_id=parent)
            mlflow.set_tags(tracking.owner_tags())
    with tracking.recording_failures("tuning"), run, tracking.killed_on_interrupt(
            SEARCH_INTERRUPTED):
        yield run


class TrialRuns:
    """A study callback: each finished trial as a nested run of the search's MLflow run,
    holding its params, its val_nll (when it completed), its state and the trial's
    attributes as tags. (optuna-integration's MLflowCallback did this; Optuna deprecated it
    in 4.9.) A trial gets one run whichever worker writes it: each write checks for the run
    first, under the store's lock."""

    def __init__(self, experiment_id: str, parent_run_id: str) -> None:
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def backfill(self, study: optuna.Study) -> None:
        """Log the finished trials that have no run yet: those a Ctrl-C or a killed worker
        stopped before their run was written (an interrupted trial is marked failed)."""
        from mlflow.tracking import MlflowClient

        logged = {run.data.tags.get("trial")
                  for run in _children(MlflowClient(), self.parent_run_id)}
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and str(trial.number) not in logged:
                self(study, trial)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        tags = {"trial": str(trial.number), "state": trial.state.name.lower()}
        tags |= {key: str(value) for key, value in trial.user_attrs.items()
                 if key != POINTS_ATTR}
        # Another worker's backfill may be writing the same trial at this moment.
        with stores.store_lock():
            if _children(MlflowClient(), self.parent_run_id, f"tags.trial = '{trial.number}'"):
                return
            with mlflow.start_run(experiment_id=self.experiment_id, nested=True,
                                  parent_run_id=self.parent_run_id, tags=tags,
                                  run_name=f"{study.study_name} trial {trial.number}"):
                mlflow.log_params(trial.params)
                if trial.value is not None:
                    mlflow.log_metric("val_nll", trial.value)


def record_winner(study: optuna.Study, winner: Winner, parent_run_id: str) -> None:
    """Tag the best trial's run (and only it) and the parent run with the winner."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for child in _children(client, parent_run_id):
        best = child.data.tags.get("trial") == str(winner.trial)
        if best:
            client.set_tag(child.info.run_id, "best_trial", "true")
        elif "best_trial" in child.data.tags:
            client.delete_tag(child.info.run_id, "best_trial")
    mlflow.set_tags({"best_trial": str(winner.trial)})
    mlflow.log_metrics({"best_val_nll": winner.val_nll,
                        "trials_finished": len(finished(study))})


def _children(client, parent_run_id: str, condition: str = "") -> list:
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    found = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    return client.search_runs([experiment_id], f"{found} and {condition}" if condition
                              else found, max_results=50_000)


def draw(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optuna's optimisation history and param importances (PED-ANOVA: no scikit-learn), as
    PNG files; the importances need at least two completed trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as optuna_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"optimization_history": lambda: optuna_plots.plot_optimization_history(study)}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) >= 2:
        figures["param_importances"] = lambda: optuna_plots.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator())
    paths = []
    for name, plot in figures.items():
        with warnings.catch_warnings():  # Optuna's matplotlib plots are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = plot()
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(out_dir / f"{name}.png", dpi=110)
        plt.close(figure)
        paths.append(out_dir / f"{name}.png")
    return paths
