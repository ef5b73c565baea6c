"""Stage `train`: fit the deep normal model with early stopping, tracked in MLflow.

Reads params `model`, `train`, `compute`, `lr_find`, `tracking`, and `data`, `generate`
(to record them), with the tune stage's winner (data/tune/best.yaml) on top; the train and
val splits; data/lr_find/lr.json.
Writes data/train/model.ckpt (each ensemble member at its own best epoch, weights-only
loadable), history.csv (per-epoch train NLL, validation NLL of the current and of the kept
weights, lr) and summary.json (MLflow run id, best epoch, each member's epoch, chosen lr, the
budget this table got: batch, steps an epoch, epochs, patience). Prints
a progress line every few seconds.
Opens one MLflow run holding every param, the data set (name, source, digest, rows,
columns), the per-epoch curves (through Lightning's MLflow logger), the lr-finder result and
plot, the checkpoint, the fitted table encoder (`table.json`: column kinds, vocabularies,
fill values, standardisation, the target's family) with the empty cells it filled per column
(metrics `filled_cells.<column>`, training split), and a servable MLflow model (`model`: the
raw feature columns in, the predictive mean, median, std and intervals out); a
failure leaves the run FAILED, Ctrl-C KILLED. With tracking.enabled false it logs nothing
(summary.json: run_id null). With compute.devices > 1 (strategy ddp) Lightning reruns this
script once per extra device; those processes train their share and track and write nothing.
"""

import argparse
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pandas as pd

from deepnormal import paths, stores, tracking
from deepnormal.budget import Budget
from deepnormal.config import load_params
from deepnormal.errors import run_stage
from deepnormal.lr_rule import read_choice
from deepnormal.outputs import staged
from deepnormal.prepared import TableDescription, read_splits
from deepnormal.processes import is_extra_ddp_process
from deepnormal.train_summary import TrainingRecord, TrainSummary
from deepnormal.tune_result import apply_tuned

# The sections this run depends on (evaluate's are set as tags by the evaluate stage,
# since evaluate can rerun into the same run with new values).
TRACKED_SECTIONS = ("data", "generate", "model", "train", "compute", "lr_find", "tracking")


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    # Everything a user can get wrong is checked before the slow imports and the run.
    params, search = apply_tuned(load_params(), paths.TUNED)
    splits = read_splits(paths.PREPARED, ("train", "val"))
    choice = read_choice(paths.LR_JSON)
    tracked = params.tracking.enabled and not is_extra_ddp_process()
    if tracked:  # an unusable store is one message now, not after training
        experiment_id = tracking.connect(params.tracking.experiment_name)

    from deepnormal.family_trial import fit_family
    from deepnormal.training import check_compute, fit, is_main_process

    check_compute(params)
    if not is_main_process():
        # A DDP worker started by Lightning: it trains its shard; rank 0 does the rest.
        with tempfile.TemporaryDirectory(prefix="deepnormal-ddp-") as scratch:
            fit(params, splits["train"], splits["val"], choice.lr, Path(scratch))
        return
    description = TableDescription.read(paths.PREPARED)
    candidates = description.family.candidates if description else ()
    if not tracked:
        print("tracking.enabled is false: nothing is logged to MLflow")
    run = (tracked_run(experiment_id, params, splits, choice, search) if tracked
           else nullcontext())
    with run as logger:
        # The checkpoint, history and summary replace the previous ones only on success.
        with staged(paths.TRAIN) as out:
            result, trial = fit_family(params, splits["train"], splits["val"], choice.lr, out,
                                       candidates, logger, trial_logger(logger),
                                       lambda line: print(line, flush=True))
            run_id = None if logger is None else logger.run_id
            TrainingRecord(summary(run_id, choice, result, trial), result.history).write(out)
            if logger is not None:
                log_outcome(out, result, splits, trial)
    report(result)


def trial_logger(logger):
    """For the family trial: each family's curves in the same run, under its own prefix."""
    def logger_for(family: str):
        if logger is None:
            return None
        from deepnormal.mlflow_logger import BatchedMLFlowLogger

        return BatchedMLFlowLogger(run_id=logger.run_id, tracking_uri=stores.tracking_uri(),
                                   metric_prefix=f"{family}.")

    return logger_for


@contextmanager
def tracked_run(experiment_id: str, params, splits, choice, search: dict):
    """The run's MLflow logger, inside a new run holding the params, the data sets and the
    lr_find result."""
    import mlflow

    from deepnormal.mlflow_logger import BatchedMLFlowLogger

    name = tracking.run_name(params, splits["train"].family)
    with tracking.training_run(experiment_id, name) as run:
        run_id = run.info.run_id
        print(f"MLflow run {run_id} in experiment '{params.tracking.experiment_name}' "
              f"at {stores.redacted(stores.tracking_uri())}", flush=True)
        logger = BatchedMLFlowLogger(run_id=run_id, tracking_uri=stores.tracking_uri())
        logger.log_hyperparams(logged_params(params, splits, choice, search))
        tracking.log_dataset(splits["train"], params, "training")
        tracking.log_dataset(splits["val"], params, "validation")
        for path in (paths.LR_JSON, paths.LR_CURVE, paths.LR_PLOT):
            mlflow.log_artifact(str(path), "lr_find")
        yield logger


def log_outcome(out: Path, result, splits, trial) -> None:
    """The fit's figures, the encoder, the checkpoint, the history and a servable model; with
    a family trial, each family's validation score, the family kept (tag `family`, and in
    the run's name) and why (tag `family_trial`)."""
    import mlflow

    from deepnormal import serving

    mlflow.log_metrics({"best_val_nll": result.best_val_nll,
                        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                        "sigma_scale": result.sigma_scale} | filled_cells(splits["train"]))
    family = result.encoder.family.name
    mlflow.set_tag("family", family)
    if trial is not None:
        mlflow.log_metrics({f"family_val_{trial.score}.{name}": value
                            for name, value in trial.scores.items()})
        mlflow.set_tag("family_trial", trial.line())
        base = splits["train"].family
        if family != base:  # the run was named before the trial
            name = mlflow.active_run().info.run_name
            mlflow.set_tag("mlflow.runName", name.replace(f"-{base}-", f"-{family}-", 1))
    mlflow.log_dict(result.encoder.to_dict(), "train/table.json")
    mlflow.set_tag("device", result.device)
    mlflow.log_artifact(str(result.checkpoint), "checkpoints")
    mlflow.log_artifact(str(out / paths.HISTORY.name), "train")
    serving.log_model(result.checkpoint, example_inputs(splits["val"]))


def report(result) -> None:
    members = ", ".join(map(str, result.member_epochs))
    print(f"best epoch {result.best_epoch} of {result.epochs_run} (members' own: {members}): "
          f"val_nll {result.best_val_nll:.4f}, sigma scale {result.sigma_scale:.3f}; "
          f"checkpoint {paths.CHECKPOINT}")


# What each kind of data reads: the toy problem reads no table, a table no toy process.
UNREAD = {"synthetic": ("data.path", "data.features", "data.target", "data.categorical",
                        "data.split_column", "data.missing", "data.min_category_rows"),
          "file": ("generate.n", "generate.x_low", "generate.x_high", "generate.intercept",
                   "generate.slope", "generate.cos_amplitude", "generate.cos_frequency",
                   "generate.noise_offset", "generate.noise_amplitude",
                   "generate.noise_frequency")}


def logged_params(params, splits, choice, search: dict) -> dict:
    """What the run depends on (not the params its data never read); with a tuned model,
    which search trial chose its values."""
    tuned = {f"tune.{key}": search[key] for key in ("study", "trial") if key in search}
    unread = UNREAD[params.data.source]
    recorded = {key: value for key, value in params.flat(TRACKED_SECTIONS).items()
                if key not in unread}
    return recorded | tuned | {
        "lr_find.chosen_lr": choice.lr,
        "lr_find.rule": choice.rule,
        "lr_find.fallback_reason": choice.fallback_reason or "none",
        "data.train_rows": len(splits["train"]),
        "data.val_rows": len(splits["val"]),
    } | {f"budget.{key}": value
         for key, value in Budget.for_rows(len(splits["train"]), params.train).as_dict().items()}


def filled_cells(train) -> dict[str, int]:
    """Per feature, the training split's empty cells, which the encoder fills."""
    return {f"filled_cells.{name}": int(count) for name, count in train.frame.isna().sum().items()}


def example_inputs(split, rows: int = 5) -> pd.DataFrame:
    """Raw rows as a request would send them; rows with an empty cell first, when any."""
    frame = split.frame
    order = frame.isna().any(axis=1).sort_values(ascending=False, kind="stable").index
    return frame.loc[order[:rows]].reset_index(drop=True)


def summary(run_id: str | None, choice, result, trial) -> TrainSummary:
    """summary.json: what evaluate needs of the fit."""
    return TrainSummary(run_id=run_id, lr=choice.lr, lr_rule=choice.rule,
                        best_epoch=result.best_epoch, best_val_nll=result.best_val_nll,
                        member_best_epochs=result.member_epochs, epochs_run=result.epochs_run,
                        stopped_early=result.stopped_early, budget=result.budget.as_dict(),
                        sigma_scale=result.sigma_scale, device=result.device,
                        family_trial=None if trial is None else trial.as_dict())


if __name__ == "__main__":
    run_stage(main)
