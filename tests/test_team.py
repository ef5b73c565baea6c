"""The team set-up of docs/tracking.md, run as written: PostgreSQL behind the MLflow server
and the Optuna study, pipeline outputs shared through a DVC remote, and what a user sees when
the database stops or a password is wrong.

The commands come from the page itself (TeamDoc); only its placeholders are filled in: a
throwaway PostgreSQL cluster on a loopback port (tests/postgres.py) for db-host, a free port
for the tracking server, temporary folders for /srv. Without a PostgreSQL server or driver
these tests skip with the reason; .ci/run makes them fail instead.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from deepnormal.stores import redacted
from tests.browser import compare_page, needs_chromium
from tests.conftest import (
    REPO,
    clone_of,
    edit_params,
    error_lines,
    free_port,
    outputs,
    restore_named,
    run,
    serving,
    stages_run,
    start_long_training,
    tool_env,
)
from tests.postgres import throwaway_cluster

DOC = REPO / "docs" / "tracking.md"
TEAM_PASSWORD = "team-secret"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def test_a_password_in_a_store_url_is_never_shown():
    assert redacted("postgresql+psycopg://team:s3:cr@t@db:5432/optuna?sslmode=require") == (
        "postgresql+psycopg://team:***@db:5432/optuna?sslmode=require")
    for url in ("postgresql+psycopg://team@db:5432/optuna", "http://mlflow-host:5000",
                "sqlite:////srv/a@b:c/optuna.db"):
        assert redacted(url) == url


def test_a_failing_tracking_server_is_described_in_a_few_words():
    from deepnormal.stores import store_error

    retried = ("API request to http://h:5000/api/2.0/mlflow/runs/get?run_id=7 failed with "
               "exception HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: "
               "/api/2.0/mlflow/runs/get?run_id=7 (Caused by ResponseError('too many 503 error "
               "responses'))")
    assert store_error(Exception(retried)) == (
        "/api/2.0/mlflow/runs/get: too many 503 error responses (the server is up; its backend "
        "store, such as its database, is not answering)")
    refused = ("HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: /api/2.0/"
               "mlflow/experiments/get-by-name?experiment_name=x (Caused by NewConnectionError("
               "'<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new "
               "connection: [Errno 111] Connection refused'))")
    assert store_error(Exception(refused)) == (
        "/api/2.0/mlflow/experiments/get-by-name: Failed to establish a new connection: "
        "[Errno 111] Connection refused")
    assert store_error(Exception("(sqlite3.OperationalError) database is locked\nmore")) == (
        "(sqlite3.OperationalError) database is locked")


# --- The page ---------------------------------------------------------------------------------


def team_section() -> str:
    text = DOC.read_text()
    start = text.index("## A team set-up")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", team_section(), flags=re.S)


@dataclass
class TeamDoc:
    """The team section's commands with its placeholders filled in."""
    pg_port: int
    mlflow_port: int
    artifacts: Path
    remote: Path

    @property
    def tracking_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def fill(self, text: str) -> str:
        for pattern, value in ((r"\bdb-host\b", "127.0.0.1"), (r"\b5432\b", str(self.pg_port)),
                               (r"\bmlflow-host:5000\b", f"127.0.0.1:{self.mlflow_port}"),
                               (r"--port 5000\b", f"--port {self.mlflow_port}"),
                               (r"\bteam-password\b", TEAM_PASSWORD),
                               (r"/srv/mlflow-artifacts\b", str(self.artifacts)),
                               (r"/srv/dvc-remote\b", str(self.remote))):
            text = re.sub(pattern, value, text)
        assert not re.search(r"db-host|mlflow-host|/srv/|team-password", text), text
        return text

    def commands(self, block: str) -> list[list[str]]:
        return [words for line in block.replace("\\\n", " ").splitlines()
                if (words := shlex.split(self.fill(line), comments=True))]

    def steps(self) -> dict[int, list[list[str]]]:
        """The numbered steps of the first bash block ('# 1. ...' starts step 1)."""
        steps: dict[int, list[list[str]]] = {}
        for line in blocks("bash")[0].replace("\\\n", " ").splitlines():
            heading = re.match(r"# (\d)\. ", line)
            if heading:
                current = steps.setdefault(int(heading.group(1)), [])
            else:
                current.extend(self.commands(line))
        return steps

    def step(self, number: int) -> list[list[str]]:
        """Step `number`'s commands, without its `export` lines (see env)."""
        return [words for words in self.steps()[number] if words[0] != "export"]

    def env(self, number: int) -> dict[str, str]:
        """Step `number`'s `export NAME=value` lines, plus a git identity for its commits."""
        exports = [words[1].split("=", 1) for words in self.steps()[number]
                   if words[0] == "export"]
        return GIT_IDENTITY | dict(exports)

    def command(self, number: int, start: str) -> list[str]:
        (found,) = [words for words in self.step(number) if words[:len(start.split())]
                    == start.split()]
        return found

    def worker(self) -> list[list[str]]:
        """The commands that join a running search from another clone."""
        return self.commands(blocks("bash")[1])

    def tune_params(self) -> dict:
        (block,) = blocks("yaml")
        return yaml.safe_load(self.fill(block))


def test_the_page_names_every_step_the_tests_run():
    doc = TeamDoc(5432, 5000, Path("/tmp/a"), Path("/tmp/r"))
    steps = doc.steps()
    assert sorted(steps) == [1, 2, 3, 4, 5]
    assert [words[0] for words in doc.step(1)] == ["psql", "createdb", "createdb"]
    assert doc.command(2, "mlflow server")[-2:] == ["--artifacts-destination", "/tmp/a"]
    assert set(doc.env(4)) - set(GIT_IDENTITY) == {"MLFLOW_TRACKING_URI", "PGPASSWORD"}
    assert doc.tune_params()["tune"]["storage"].startswith("postgresql+psycopg://team@")
    assert doc.worker()[-1] == ["python", "stages/tune.py"]


# --- The services -----------------------------------------------------------------------------

pipeline_tests = pytest.mark.pipeline


@pytest.fixture(scope="module")
def cluster():
    with throwaway_cluster(free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def doc(cluster, tmp_path_factory) -> TeamDoc:
    shared = tmp_path_factory.mktemp("team-shared")
    return TeamDoc(cluster.port, free_port(), shared / "mlflow-artifacts", shared / "dvc-remote")


@pytest.fixture(scope="module")
def database(cluster, doc):
    """Step 1, as the cluster's superuser."""
    for words in doc.step(1):
        run([cluster.tool(words[0]), *words[1:]], cluster.home,
            PGPASSWORD=cluster.admin_password)
    return cluster


@pytest.fixture(scope="module")
def server(database, doc, tmp_path_factory) -> str:
    """Step 2: the tracking server on the team's database."""
    home = tmp_path_factory.mktemp("team-server")
    with serving(doc.command(2, "mlflow server"), f"{doc.tracking_url}/health", cwd=home,
                 log=home / "server.log", **doc.env(2)):
        yield doc.tracking_url


def database_rows(cluster, database: str, query: str) -> list[tuple]:
    import psycopg

    address = cluster.url(database, "team", TEAM_PASSWORD).replace("+psycopg", "")
    with psycopg.connect(address) as connection:
        return connection.execute(query).fetchall()


def client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)


def runs_of(url: str, experiment: str) -> list:
    found = client(url).get_experiment_by_name(experiment)
    return client(url).search_runs([found.experiment_id]) if found else []


# --- Two users at once ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_users(server, doc, pristine, tmp_path_factory) -> dict[str, Path]:
    """Two clones, two users with different params, running step 4's `dvc repro` at the same
    time against the server."""
    users = {}
    for name, epochs in (("alice", 5), ("bob", 4)):
        root = clone_of(pristine, tmp_path_factory.mktemp(name) / "repo")
        edit_params(root, {"train": {"max_epochs": epochs},
                           "tracking": {"experiment_name": "team"}})
        users[name] = root
    started = {name: subprocess.Popen(doc.command(4, "dvc repro"), cwd=root,
                                      env=tool_env(**doc.env(4)), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
               for name, root in users.items()}
    for name, process in started.items():
        output = process.communicate(timeout=900)[0]
        assert process.returncode == 0, f"{name}:\n{output}"
        assert stages_run(output)[-2:] == ["train", "evaluate"], output
    return users


@pipeline_tests
def test_two_users_at_once_both_finish_with_everything_on_postgresql(server, two_users, doc,
                                                                     cluster):
    runs = {found.data.params["train.max_epochs"]: found for found in runs_of(server, "team")}
    assert sorted(runs) == ["4", "5"]
    for epochs, root in (("5", two_users["alice"]), ("4", two_users["bob"])):
        tracked = runs[epochs]
        summary = json.loads((root / "data/train/summary.json").read_text())
        assert tracked.info.run_id == summary["run_id"]
        assert tracked.info.status == "FINISHED"
        history = pd.read_csv(root / "data/train/history.csv")
        curve = client(server).get_metric_history(tracked.info.run_id, "val_nll")
        np.testing.assert_allclose([m.value for m in curve], history["val_nll"], rtol=1e-6)
        metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
        assert tracked.data.metrics["test_nll"] == pytest.approx(metrics["test"]["model"]["nll"])
        artifacts = {a.path for folder in ("checkpoints", "plots", "evaluate")
                     for a in client(server).list_artifacts(tracked.info.run_id, folder)}
        assert {"checkpoints/model.ckpt", "plots/prediction_band.png",
                "evaluate/metrics.json"} <= artifacts
    # The runs are rows of the team's database; the files are in the artifact destination.
    stored = dict(database_rows(cluster, "mlflow", "SELECT run_uuid, status FROM runs"))
    assert {stored[found.info.run_id] for found in runs.values()} == {"FINISHED"}
    for found in runs.values():  # <destination>/<experiment id>/<run id>/artifacts/...
        (checkpoint,) = doc.artifacts.glob(f"*/{found.info.run_id}/artifacts/checkpoints/*")
        assert checkpoint.name == "model.ckpt"
    for root in two_users.values():
        assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()


@pipeline_tests
@needs_chromium
def test_the_ui_compares_the_two_users_runs(server, two_users, tmp_path):
    runs = sorted(runs_of(server, "team"), key=lambda found: found.data.params["train.max_epochs"])
    experiment_id = runs[0].info.experiment_id
    text = compare_page(server, experiment_id, [found.info.run_id for found in runs],
                        "team-compare-runs.png", tmp_path)
    assert "Comparing 2 Runs from 1 Experiment" in text, text[:80]
    rows = [text[at + 1:at + 3] for at, item in enumerate(text) if item == "train.max_epochs"]
    assert ["4", "5"] in rows, rows
    # The metrics table is scrolled: its first rows are rendered.
    assert "best_val_nll" in text and "test_calibration_error" in text


# --- Two tuning workers on one study ----------------------------------------------------------


def trial_numbers(output: str) -> list[int]:
    """The trials a worker ran, from its progress lines ('trial   3 complete ...')."""
    return [int(match) for match in re.findall(r"^trial +(\d+) ", output, flags=re.M)]


@pipeline_tests
def test_two_tuning_workers_fill_one_study_and_its_winner_trains(server, doc, cluster, pristine,
                                                                  tmp_path):
    trials = 10  # long enough for the second worker to join (it starts in 10-20 s)
    tune = {"trials": trials, "prune": False,
            "space": {"model.hidden_sizes": [[4], [8]],
                      "lr_find.fixed_lr": {"low": 3e-3, "high": 1e-2, "log": True}}}
    users = {name: clone_of(pristine, tmp_path / name) for name in ("alice", "bob")}
    for root in users.values():
        # Trials of a few seconds each, so that the second worker joins a running search;
        # params.yaml's own lr barely trains: the winner is a searched trial.
        edit_params(root, {"tune": tune | doc.tune_params()["tune"],
                           "train": {"max_epochs": 300, "patience": 1.0},
                           "lr_find": {"fixed_lr": 1e-5},
                           "tracking": {"experiment_name": "team-tune"}})
    env = doc.env(4)
    *prepare, join = doc.worker()
    for words in prepare:  # bob's data, ready before the search starts
        run(words, users["bob"], **env)
    alice = subprocess.Popen(doc.command(4, "dvc repro"), cwd=users["alice"],
                             env=tool_env(**env), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in alice.stdout:  # bob joins once alice's search has its MLflow run
        seen.append(line)
        if line.startswith("trial "):
            break
    bob = run(join, users["bob"], **env).stdout
    output = "".join(seen) + alice.communicate(timeout=900)[0]
    assert alice.returncode == 0, output
    assert stages_run(output) == ["tune", "lr_find", "train", "evaluate"], output

    best = yaml.safe_load((users["alice"] / "data/tune/best.yaml").read_text())
    assert best["search"]["storage"] == doc.tune_params()["tune"]["storage"]
    import optuna

    study = optuna.load_study(study_name=best["search"]["study"],
                              storage=cluster.url("optuna", "team", TEAM_PASSWORD))
    states = [trial.state.name for trial in study.trials]
    assert "RUNNING" not in states, states
    assert trials <= states.count("COMPLETE") <= trials + 1, states
    # Each trial ran once, in one of the two workers, and both workers ran some.
    by_alice, by_bob = trial_numbers(output), trial_numbers(bob)
    assert by_alice and by_bob, (output, bob)
    assert sorted(by_alice + by_bob) == [trial.number for trial in study.trials]

    # The winner is what trained, and the search is one run with a nested run per trial.
    assert best["search"]["trial"] != 0
    lr = json.loads((users["alice"] / "data/lr_find/lr.json").read_text())["lr"]
    assert lr == pytest.approx(best["params"]["lr_find.fixed_lr"])
    runs = runs_of(server, "team-tune")
    (search,) = [r for r in runs if r.data.tags.get("deepnormal.kind") == "tune"]
    assert search.info.status == "FINISHED"
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == search.info.run_id]
    assert sorted(int(r.data.tags["trial"]) for r in nested) == sorted(by_alice + by_bob)
    (trained,) = [r for r in runs if "tune.trial" in r.data.params]
    assert trained.info.status == "FINISHED"
    assert trained.data.params["tune.trial"] == str(best["search"]["trial"])


# --- Outputs through a DVC remote ------------------------------------------------------------


@pipeline_tests
def test_a_teammate_pulls_the_outputs_instead_of_recomputing_them(server, doc, pristine,
                                                                   tmp_path):
    alice = clone_of(pristine, tmp_path / "alice")
    env = doc.env(4)
    for words in doc.step(3) + doc.step(4):
        run(words, alice, **env)
    assert any(path.is_file() for path in doc.remote.rglob("*"))

    bob = tmp_path / "bob"
    run(["git", "clone", "-q", str(alice), str(bob)], tmp_path)
    assert not (bob / "data/train/model.ckpt").exists()
    test_split = pd.read_parquet(alice / "data/prepared/test.parquet")
    test_split[["x"]].to_csv(bob / "new.csv", index=False)
    pull, status, predict = doc.step(5)
    run(pull, bob, **env)
    assert "up to date" in run(status, bob, **env).stdout
    assert stages_run(run(["dvc", "repro"], bob, **env).stdout) == []
    for output in ("data/train/model.ckpt", "data/evaluate/metrics.json"):
        assert (bob / output).read_bytes() == (alice / output).read_bytes()
    run(predict, bob, **env)
    predicted = pd.read_csv(bob / "predictions.csv")
    evaluated = pd.read_csv(alice / "data/evaluate/predictions.csv")
    for column in ("mu", "sigma"):
        np.testing.assert_allclose(predicted[column], evaluated[column], rtol=1e-6)


# --- Faults -----------------------------------------------------------------------------------


@pipeline_tests
def test_the_database_stopping_during_training_is_one_line_and_the_next_run_is_clean(
        server, doc, cluster, pristine, tmp_path):
    root = clone_of(pristine, tmp_path / "repo")
    env = doc.env(4)
    edit_params(root, {"train": {"max_epochs": 4}, "tracking": {"experiment_name": "team-down"}})
    run(["dvc", "repro"], root, **env)  # an earlier, finished run
    before = outputs(root)

    training = start_long_training(root, doc.command(4, "dvc repro"), **env)
    try:
        cluster.stop()
        output = training.communicate(timeout=300)[0]
    finally:
        if not cluster.is_running():
            cluster.start()
    assert training.returncode != 0, output
    (message,) = error_lines(output)
    assert message.startswith(f"error: the MLflow tracking store at {server} failed while "
                              "training: "), message
    assert "too many 503 error responses (the server is up; its backend store, such as its " \
           "database, is not answering). Rerun `dvc repro` once the store is back" in message
    restore_named(root, message)  # DVC removed the stage's outputs before it ran
    assert outputs(root, scratch=False) == before

    edit_params(root, {"train": {"max_epochs": 3}})
    rerun = run(["dvc", "repro"], root, **env).stdout
    assert stages_run(rerun)[-2:] == ["train", "evaluate"]
    assert "marked MLflow run" in rerun and "KILLED" in rerun
    statuses = sorted(found.info.status for found in runs_of(server, "team-down"))
    assert statuses == ["FINISHED", "FINISHED", "KILLED"]


@pipeline_tests
def test_a_wrong_password_is_one_line_within_seconds(database, doc, cluster, pristine,
                                                     tmp_path):
    root = clone_of(pristine, tmp_path / "repo")
    before = outputs(root)
    # tune.storage as the page writes it, with a wrong PGPASSWORD.
    edit_params(root, {"tune": doc.tune_params()["tune"]})
    started = time.monotonic()
    result = run(["dvc", "repro", "-s", "tune"], root, check=False, PGPASSWORD="wrong-password")
    waited = time.monotonic() - started
    (message,) = error_lines(result.stderr)
    storage = doc.tune_params()["tune"]["storage"]
    assert message.startswith(f"error: cannot use the Optuna storage {storage}: "), message
    assert 'password authentication failed for user "team"' in message
    assert message.endswith("check tune.storage; `dvc checkout tune` restores this stage's "
                            "earlier outputs")
    restore_named(root, message)
    assert waited < 60

    # MLflow straight on the database, the password in the URL: shown as ***.
    url = cluster.url("mlflow", "team", "wrong-password")
    started = time.monotonic()
    result = run(["dvc", "repro", "--force", "-s", "train"], root, check=False,
                 MLFLOW_TRACKING_URI=url)
    waited = time.monotonic() - started
    (message,) = error_lines(result.stderr)
    assert message.startswith(f"error: cannot use the MLflow tracking store at {redacted(url)}: ")
    assert 'password authentication failed for user "team"' in message
    assert "wrong-password" not in result.stdout + result.stderr
    assert waited < 60
    restore_named(root, message)
    assert outputs(root, scratch=False) == before
