"""Where MLflow writes, and the tags every run carries.

Default: an embedded SQLite store `mlflow.db` and an artifact folder `mlartifacts/` at the
repository root, both as absolute paths. The root is `$DVC_ROOT` when DVC runs the stage:
`dvc exp run --temp` and queued experiments run in a copy under .dvc/tmp/exps, and a
relative path would write into that copy and be lost with it. `MLFLOW_TRACKING_URI`
overrides the store (and the server then decides where artifacts go).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import urllib.parse
import warnings
from contextlib import contextmanager
from pathlib import Path

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / STORE_FILE}"


def shown(url: str) -> str:
    """A store's URL as messages and logs show it: the password, if the URL holds one,
    replaced by ***. (Better kept out of it: PostgreSQL's client reads PGPASSWORD.)"""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (sep and at and colon):
        return url
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def uses_default_store() -> bool:
    return not os.environ.get("MLFLOW_TRACKING_URI")


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=repo_root(), timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


# Which process owns a run, so that the next run can tell a crashed one from a live one.
PID_TAG = "deepnormal.pid"
HOST_TAG = "deepnormal.host"


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


# MLflow's HTTP client retries an unreachable server with exponential backoff for minutes;
# a pipeline stage should say so within seconds. The user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def connect(experiment_name: str):
    """Point mlflow at the store and return the experiment id, creating it if needed.

    Raises DeepnormalError, naming the store, when it cannot be reached.
    """
    with store_lock():
        return _reach_store(lambda: _experiment_id(experiment_name))


@contextmanager
def store_lock():
    """Serialise set-up work on a SQLite store between processes of this host.

    Two queued experiments (`dvc queue start -j 2`) may open a brand-new store at the same
    moment, and MLflow's schema creation fails for the second ("table ... already exists");
    two tuning workers starting together must not both create the search's run. A lock file
    beside the database makes them take turns for the few seconds it takes.
    """
    prefix = "sqlite:///"
    uri = tracking_uri()
    if not uri.startswith(prefix) or os.name != "posix":
        yield
        return
    import fcntl

    lock = Path(uri.removeprefix(prefix).split("?")[0] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
                f"{shown(tracking_uri())}. To track this model again, retrain: "
                "`dvc repro --force -s train && dvc repro`"
            ) from None

    _reach_store(lookup)


def _reach_store(action):
    from deepnormal.errors import DeepnormalError

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        probe_database(tracking_uri())
        return action()
    except DeepnormalError:
        raise
    except Exception as error:  # MlflowException, requests' ConnectionError, sqlite errors...
        message = store_error(error)
        if "database is locked" in message:
            advice = ("another process holds the SQLite store (an open `sqlite3` shell, a "
                      "stuck job); close it and rerun")
        else:
            advice = ("check that the server is up and MLFLOW_TRACKING_URI's address and "
                      "credentials, or unset it to use the local store")
        raise DeepnormalError(
            f"cannot use the MLflow tracking store at {shown(tracking_uri())}: {message}. {advice}"
        ) from None


# Database servers whose drivers take a connect_timeout (seconds).
NETWORK_DATABASES = ("postgresql", "mysql")


def database_kind(url: str) -> str:
    """'postgresql' for postgresql+psycopg://..., 'sqlite', 'http', ..."""
    return url.partition("://")[0].partition("+")[0]


def connect_args(url: str) -> dict:
    """SQLAlchemy connect_args for a database URL: SQLite waits for a busy file rather than
    failing at once; PostgreSQL and MySQL give up on a host that does not answer after 10 s
    (their drivers would wait for the operating system's TCP timeout, minutes)."""
    kind = database_kind(url)
    if kind == "sqlite":
        return {"timeout": 60}
    return {"connect_timeout": 10} if kind in NETWORK_DATABASES else {}


def probe_database(uri: str) -> None:
    """Connect once to a database store that MLflow reaches directly
    (MLFLOW_TRACKING_URI=postgresql+psycopg://...). MLflow retries a database it cannot reach
    (a wrong password, a host that is down) ten times with growing pauses, about 100 s, a
    count no setting changes; one attempt first says what is wrong within seconds."""
    if database_kind(uri) not in NETWORK_DATABASES:
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args=connect_args(uri))
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


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
            f"the MLflow tracking store at {shown(tracking_uri())} failed while {what}: "
            f"{store_error(error)}. Rerun `dvc repro` once the store is back"
        ) from None


# requests' message when MLflow's HTTP client gives up, alone or inside MLflow's "API request
# to <url> failed with exception ...": "HTTPConnectionPool(host=..., port=...): Max retries
# exceeded with url: /api/2.0/mlflow/runs/get?run_id=... (Caused by ResponseError('too many
# 503 error responses'))"; a refused connection's cause starts with "<urllib3... object>: ".
REST_FAILURE = re.compile(r"Max retries exceeded with url: (\S+) \(Caused by \w+\("
                          r"'(?:<[^>]*>: )?(.+?)'\)\)")


def store_error(error: BaseException) -> str:
    """What went wrong with a store, in a few words: for a tracking server, the endpoint and
    the cause (a 503 is the server's own store failing), else the error's first line."""
    from deepnormal.errors import first_line

    text = first_line(error)
    failed = REST_FAILURE.search(text)
    if not failed:
        return text[:300]
    endpoint, cause = urllib.parse.urlsplit(failed.group(1)).path, failed.group(2)
    if " 503 " in f" {cause} ":
        cause += " (the server is up; its backend store, such as its database, is not answering)"
    return f"{endpoint}: {cause}"


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


def log_dataset(split, params, context: str) -> None:
    """Record a split as an MLflow dataset input: name, source, digest, rows and columns."""
    import mlflow

    frame = split.frame.assign(**{split.target_name: split.target})
    if params.data.source == "file":
        source, name = params.data.path, Path(params.data.path).stem
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
