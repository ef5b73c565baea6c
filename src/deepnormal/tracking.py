"""The MLflow run's life: the experiment, a run per training, its tags and data sets, and
what a failing store or Ctrl-C does to it. Where the store is: stores.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

from deepnormal.stores import (
    ARTIFACT_DIR,
    reach_store,
    redacted,
    repo_root,
    store_error,
    store_lock,
    tracking_uri,
    uses_default_store,
)

# Which process owns a run, so that the next run can tell a crashed one from a live one.
PID_TAG = "deepnormal.pid"
HOST_TAG = "deepnormal.host"


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=repo_root(), timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def run_tags() -> dict[str, str]:
    tags = owner_tags()
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        tags["dvc_exp_name"] = exp_name
    return tags


def connect(experiment_name: str):
    """Point mlflow at the store and return the experiment id, creating it if needed.

    Raises DeepnormalError, naming the store, when it cannot be reached.
    """
    with store_lock():
        return reach_store(lambda: _experiment_id(experiment_name))


def find_run(run_id: str, recorded_in: Path) -> None:
    """Point mlflow at the store and check that the training run `run_id` is in it."""
    from deepnormal.errors import DeepnormalError

    def lookup():
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())
        try:
            mlflow.get_run(run_id)
        except mlflow.exceptions.MlflowException as error:
            if "RESOURCE_DOES_NOT_EXIST" not in str(error.error_code):
                raise
            raise DeepnormalError(
                f"the training run {run_id} (from {recorded_in}) is not in the MLflow store at "
                f"{redacted(tracking_uri())}. To track this model again, retrain: "
                "`dvc repro --force -s train && dvc repro`"
            ) from None

    reach_store(lookup)


@contextmanager
def recording_failures(what: str):
    """A store that fails in the middle of a stage (the tracking server, or the database
    behind it, going down) becomes one line naming it. The stage's outputs are replaced only
    on success, so they stay as they were; a run the store could not close stays RUNNING
    until the next training run marks it KILLED (close_dead_runs)."""
    import mlflow
    import requests

    from deepnormal.errors import DeepnormalError

    failures = (mlflow.exceptions.MlflowException, requests.exceptions.RequestException)
    try:
        yield
    except failures as error:
        # The first failure says most: later ones come from closing the run on the same
        # broken store (Lightning's logger, mlflow.start_run's exit).
        while isinstance(error.__context__, failures):
            error = error.__context__
        raise DeepnormalError(
            f"the MLflow tracking store at {redacted(tracking_uri())} failed while {what}: "
            f"{store_error(error)}. Rerun `dvc repro` once the store is back"
        ) from None


def _experiment_id(experiment_name: str):
    import mlflow

    # Decided before set_tracking_uri(), which exports MLFLOW_TRACKING_URI itself.
    location = None
    if uses_default_store():
        location = (repo_root() / ARTIFACT_DIR / experiment_name).as_uri()
    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(experiment_name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process (a parallel queued experiment) created it first.
        return mlflow.get_experiment_by_name(experiment_name).experiment_id


def close_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this experiment whose training process, on this
    host, no longer exists (a SIGKILL, a power cut): they would otherwise stay RUNNING
    forever. Runs of live processes (a parallel queued experiment) are left alone, and so
    are runs from other hosts, which this process cannot check. Returns the ids it closed."""
    from mlflow.tracking import MlflowClient

    from deepnormal.processes import process_alive

    client = MlflowClient(tracking_uri())
    host = socket.gethostname()
    closed = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) == host and pid.isdigit() and not process_alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


@contextmanager
def training_run(experiment_id: str, run_name: str | None):
    """A new MLflow run for this training process, as the active run: FINISHED when the
    block ends, FAILED on an error, KILLED on Ctrl-C (then one readable error). Runs that
    dead training processes left RUNNING are closed first. A store that fails on the way is
    one readable error (recording_failures)."""
    import mlflow

    with recording_failures("training"):
        for run_id in close_dead_runs(experiment_id):
            print(f"marked MLflow run {run_id} KILLED: its training process died without "
                  "closing it", flush=True)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                              tags=run_tags()) as run, killed_on_interrupt():
            yield run


@contextmanager
def killed_on_interrupt(message: str | None = None):
    """Ctrl-C ends the active run as KILLED (not FAILED) and becomes one readable error
    (errors.INTERRUPTED unless `message`).

    Lightning turns a KeyboardInterrupt inside `fit` into SystemExit(1), so both count.
    """
    import mlflow

    from deepnormal.errors import INTERRUPTED, DeepnormalError

    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run("KILLED")
        raise DeepnormalError(message or INTERRUPTED) from None


def owner_tags() -> dict[str, str]:
    """Claims a run for this process (see close_dead_runs)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def table_name(params) -> str:
    """'diabetes' for examples/diabetes.csv (or .csv.gz), 'synthetic' for the toy problem."""
    if params.data.source != "file":
        return "synthetic"
    return Path(params.data.path).name.split(".")[0]


def run_name(params, family: str) -> str:
    """A run's name a person can tell apart: the table, the family and the DVC experiment's
    name, or four random hex digits (e.g. diabetes-lognormal-3f9a)."""
    suffix = os.environ.get("DVC_EXP_NAME") or uuid.uuid4().hex[:4]
    return f"{table_name(params)}-{family}-{suffix}"


def log_dataset(split, params, context: str) -> None:
    """Record a split as an MLflow dataset input: name, source, digest, rows and columns;
    `context` is its role (training, validation, test)."""
    import mlflow

    frame = split.frame.assign(**{split.target_name: split.target})
    if params.data.source == "file":
        source, name = params.data.path, table_name(params)
    else:
        source, name = "synthetic", f"synthetic-seed{params.generate.seed}"
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a path
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"{name}-{context}",
                                          targets=split.target_name)
    try:
        mlflow.log_input(dataset, context=context)
    except mlflow.exceptions.MlflowException as error:
        # Two runs logging the same data set at the same moment (two users, two queued
        # experiments) race in MLflow's store, which looks the data set up and then inserts
        # it: the later insert breaks its unique key. Logged again, it finds the row.
        message = str(error).lower()
        if "dataset" not in message or not ("unique" in message or "duplicate" in message):
            raise
        mlflow.log_input(dataset, context=context)
