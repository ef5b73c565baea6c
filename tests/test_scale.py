"""Experiments at scale, each on the engine built for it: DVC's queue with two workers, an
MLflow tracking server, Lightning DDP on two CPU processes, MLflow model serving, the
`deepnormal-predict` command, and the MLflow UI's compare page in headless Chromium.

Every server here binds to 127.0.0.1 on a free port and is stopped by its test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.browser import compare_page, needs_chromium
from tests.conftest import (
    clone_of,
    dvc,
    edit_params,
    free_port,
    mlflow_client,
    run,
    search_all,
    serving,
    stages_run,
)

pytestmark = pytest.mark.pipeline
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def test_predict_command_matches_evaluate(pristine, tmp_path):
    test_split = pd.read_parquet(pristine / "data/prepared/test.parquet")
    inputs = test_split[["x"]].assign(row_id=range(len(test_split)))
    inputs.to_parquet(tmp_path / "inputs.parquet")
    result = run([sys.executable, "-m", "deepnormal.predict", str(tmp_path / "inputs.parquet"),
                  str(tmp_path / "out.csv"), "--levels", "0.95"], cwd=pristine)
    assert f"wrote {len(inputs)} predictions" in result.stdout
    predicted = pd.read_csv(tmp_path / "out.csv")
    assert list(predicted.columns) == ["x", "row_id", "mean", "median", "std", "mu", "sigma",
                                       "lower_95", "upper_95", "out_of_range"]
    evaluated = pd.read_csv(pristine / "data/evaluate/predictions.csv")
    for column in ("mean", "median", "std", "mu", "sigma", "lower_95", "upper_95"):
        np.testing.assert_allclose(predicted[column], evaluated[column], rtol=1e-6)

    pd.DataFrame({"z": [1.0]}).to_csv(tmp_path / "wrong.csv", index=False)
    failed = run([sys.executable, "-m", "deepnormal.predict", str(tmp_path / "wrong.csv"),
                  str(tmp_path / "never.csv")], cwd=pristine, check=False)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'wrong.csv'} has no column 'x'")
    assert not (tmp_path / "never.csv").exists()


def test_ddp_on_two_cpu_processes_logs_one_run_from_rank_zero(clone):
    edit_params(clone, {"compute": {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}})
    result = dvc("repro", "-s", "train", cwd=clone)
    assert "training on cpu x2 (ddp" in result.stdout
    runs = search_all(mlflow_client(clone))
    assert len(runs) == 1, "one MLflow run, from rank zero only"
    (trained,) = runs
    assert trained.info.status == "FINISHED"
    assert trained.data.params["compute.devices"] == "2"
    assert trained.data.tags["device"].startswith("cpu x2 (ddp")
    summary = json.loads((clone / "data/train/summary.json").read_text())
    assert summary["run_id"] == trained.info.run_id

    # The checkpoint loads in one process and scores the validation split exactly as the
    # two ranks did during training (each rank scored the whole split, before the variance
    # calibration it fits there, which the tiny params turn on).
    from deepnormal.inference import load_model
    from deepnormal.metrics import nll
    from deepnormal.prepared import read_split

    model = load_model(clone / "data/train/model.ckpt")
    val = read_split(clone / "data/prepared/val.parquet")
    assert model.sigma_scale != 1.0
    uncalibrated = model.predict(val.frame, calibrated=False).distribution
    assert nll(val.target, uncalibrated) == pytest.approx(
        summary["best_val_nll"], rel=1e-5)
    assert trained.data.metrics["best_val_nll"] == pytest.approx(summary["best_val_nll"])


def wait_for_queue(root: Path, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = dvc("queue", "status", cwd=root).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, f"queue still busy after {timeout} s:\n{status}"
        time.sleep(5)


def test_queued_sweep_on_two_workers_tracks_each_experiment_once(clone):
    # Queued experiments start from the last commit: commit the tiny params and dvc.lock.
    for cmd in (["add", "-A"], ["commit", "-q", "-m", "tiny pipeline"]):
        subprocess.run(GIT + cmd, cwd=clone, check=True, capture_output=True)
    queued = dvc("exp", "run", "--queue", "-S", "train.patience=0.2,0.3", cwd=clone).stdout
    queued += dvc("exp", "run", "--queue", "-S", "train.seed=7", cwd=clone).stdout
    names = [line.split("'")[1] for line in queued.splitlines() if line.startswith("Queued")]
    assert len(names) == 3, queued
    try:
        dvc("queue", "start", "-j", "2", cwd=clone)
        status = wait_for_queue(clone)
    finally:
        dvc("queue", "stop", cwd=clone, check=False)
    assert status.count("Success") == 3, status

    shown = json.loads(dvc("exp", "show", "--json", cwd=clone).stdout)
    experiments = {exp["name"]: exp for entry in shown for exp in entry.get("experiments") or []}
    assert set(names) <= set(experiments), experiments.keys()
    runs = search_all(mlflow_client(clone))  # the workers wrote the clone's own store
    by_name = {}
    for found in runs:
        by_name.setdefault(found.data.tags.get("dvc_exp_name"), []).append(found)
    for name in names:
        (tracked,) = by_name[name]  # exactly once
        assert tracked.info.run_name == f"synthetic-normal-{name}"  # table, family, experiment
        assert tracked.info.status == "FINISHED"
        assert "test_nll" in tracked.data.metrics
        assert len(MlflowClient(f"sqlite:///{clone / 'mlflow.db'}").get_metric_history(
            tracked.info.run_id, "val_nll")) == int(tracked.data.metrics["epochs_run"])
    patience = sorted(by_name[name][0].data.params["train.patience"] for name in names)
    assert patience == ["0.2", "0.3", "0.5"]
    # Artifacts land in the repository's folder, not in the queue's temporary copies.
    assert len(list((clone / "mlartifacts").rglob("model.ckpt"))) >= 3


# --- A tracking server, the UI, and model serving -------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on loopback with its own SQLite backend and artifact store."""
    home = tmp_path_factory.mktemp("server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{home / 'server.db'}",
           "--artifacts-destination", str(home / "artifacts"), "--workers", "1"]
    with serving(cmd, f"{url}/health", cwd=home, log=home / "server.log"):
        yield url, home


@pytest.fixture(scope="module")
def tracked_on_server(server, pristine, tmp_path_factory):
    """The clone retrained twice against the server: same params, then fewer epochs."""
    url, _ = server
    root = clone_of(pristine, tmp_path_factory.mktemp("server-clone") / "repo")
    runs = []
    for max_epochs in (None, 3):
        if max_epochs is not None:
            edit_params(root, {"train": {"max_epochs": max_epochs}})
        result = dvc("repro", "--force", "-s", "train", cwd=root, MLFLOW_TRACKING_URI=url)
        dvc("repro", cwd=root, MLFLOW_TRACKING_URI=url)
        runs.append(json.loads((root / "data/train/summary.json").read_text())["run_id"])
        if max_epochs is None:
            first_metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    assert f"at {url}" in result.stdout
    return root, runs, first_metrics


def test_pipeline_logs_runs_metrics_and_artifacts_to_a_tracking_server(server, tracked_on_server):
    url, home = server
    root, run_ids, _ = tracked_on_server
    client = MlflowClient(url)
    runs = {found.info.run_id: found for found in search_all(client)}
    assert set(runs) == set(run_ids)
    first = runs[run_ids[0]]
    assert first.info.status == "FINISHED"
    assert first.data.params["train.max_epochs"] == "6"
    assert runs[run_ids[1]].data.params["train.max_epochs"] == "3"
    assert "test_nll" in first.data.metrics and "test_crps" in first.data.metrics
    history = pd.read_csv(root / "data/train/history.csv")
    assert len(client.get_metric_history(run_ids[1], "val_nll")) == len(history)
    artifacts = {a.path for folder in ("checkpoints", "plots", "evaluate")
                 for a in client.list_artifacts(first.info.run_id, folder)}
    assert {"checkpoints/model.ckpt", "plots/prediction_band.png",
            "evaluate/metrics.json"} <= artifacts
    # The server stored the files; nothing went to a local store or artifact folder.
    assert list((home / "artifacts").rglob("model.ckpt"))
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()


def test_same_params_give_identical_data_and_metrics(pristine, tracked_on_server, tmp_path):
    """Determinism: the forced retrain with unchanged params reproduced the first run's
    test metrics; a forced generate reproduces the data files byte for byte."""
    _, _, retrained = tracked_on_server
    original = json.loads((pristine / "data/evaluate/metrics.json").read_text())
    for predictor in ("model", "linear", "oracle"):
        for key, value in original["test"][predictor].items():
            assert retrained["test"][predictor][key] == pytest.approx(value, abs=1e-6), key

    root = clone_of(pristine, tmp_path / "repo")
    dvc("repro", "--force", "-s", "generate", cwd=root)
    for name in ("train", "val", "test"):
        path = f"data/prepared/{name}.parquet"
        assert (root / path).read_bytes() == (pristine / path).read_bytes()


def test_mlflow_models_serve_answers_rest_requests(server, tracked_on_server, tmp_path):
    url, _ = server
    root, run_ids, _ = tracked_on_server
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_ids[1]}/model",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with serving(cmd, f"http://127.0.0.1:{port}/ping", cwd=tmp_path, log=tmp_path / "serve.log",
                 MLFLOW_TRACKING_URI=url):
        x = [-3.927, 0.0, 4.5]
        body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[v] for v in x]}})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = pd.DataFrame(json.loads(response.read())["predictions"])

    from deepnormal.inference import load_model

    model = load_model(root / "data/train/model.ckpt")
    predicted = model.predict(pd.DataFrame({"x": x})).distribution
    mu, sigma = predicted.loc, predicted.scale
    np.testing.assert_allclose(served["mu"], mu, rtol=1e-6)
    np.testing.assert_allclose(served["mean"], mu, rtol=1e-6)
    np.testing.assert_allclose(served["sigma"], sigma, rtol=1e-6)


@needs_chromium
def test_ui_compare_page_shows_both_runs_params_and_test_metrics(server, tracked_on_server,
                                                                  tmp_path):
    url, _ = server
    _, run_ids, _ = tracked_on_server
    experiment = MlflowClient(url).get_experiment_by_name("deepnormal")
    text = compare_page(url, experiment.experiment_id, run_ids, "compare-runs.png", tmp_path)
    assert "Comparing 2 Runs from 1 Experiment" in text, text[:80]
    for run_id in run_ids:
        assert run_id in text
    # The params table: a row name followed by each run's value (the name also labels the
    # parallel coordinates plot above it).
    rows = [text[at + 1:at + 3] for at, item in enumerate(text) if item == "train.max_epochs"]
    assert ["6", "3"] in rows, rows
    assert "generate.n" in text and "model.hidden_sizes" in text
    for metric in ("best_val_nll", "test_crps", "test_calibration_error"):
        assert metric in text, metric


def test_evaluate_only_rerun_on_the_server_adds_to_the_same_run(server, tracked_on_server):
    url, _ = server
    root, run_ids, _ = tracked_on_server
    params = (root / "params.yaml").read_text()
    edit_params(root, {"evaluate": {"interval_levels": [0.9]}})
    try:
        assert stages_run(dvc("repro", cwd=root, MLFLOW_TRACKING_URI=url).stdout) == ["evaluate"]
    finally:  # the other tests of this module share the clone
        (root / "params.yaml").write_text(params)
    assert "test_picp_90" in MlflowClient(url).get_run(run_ids[1]).data.metrics
