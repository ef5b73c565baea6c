"""Where MLflow (and the tune stage's Optuna study) store their data, and what to say when a
store cannot be used. No MLflow import at module level.

Default: an embedded SQLite store `mlflow.db` and an artifact folder `mlartifacts/` at the
repository root, both as absolute paths. The root is `$DVC_ROOT` when DVC runs the stage:
`dvc exp run --temp` and queued experiments run in a copy under .dvc/tmp/exps, and a
relative path would write into that copy and be lost with it. `MLFLOW_TRACKING_URI`
overrides the store (and the server then decides where artifacts go).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / STORE_FILE}"


def redacted(url: str) -> str:
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


# MLflow's HTTP client retries an unreachable server with exponential backoff for minutes;
# a pipeline stage should say so within seconds. The user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


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


def reach_store(action):
    """Run `action` against the store; a failure becomes one DeepnormalError naming it."""
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
        raise DeepnormalError(f"cannot use the MLflow tracking store at "
                              f"{redacted(tracking_uri())}: {message}. {advice}") from None


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
