"""End to end: the real `dvc repro` on a tiny configuration, the real MLflow store.

Tests in this module share one pipeline run (see conftest.pipeline); the ones that edit
params restore them before they finish.
"""

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY, dvc, edit_params, mlflow_client, search_all, stages_run

STAGES = ["generate", "lr_find", "train", "evaluate"]


@pytest.fixture(scope="module")
def root(pipeline):
    root, result = pipeline
    assert stages_run(result.stdout) == STAGES, result.stdout
    return root


def only_run(root):
    runs = search_all(mlflow_client(root))
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_every_output_exists_and_parses(root):
    data = root / "data"
    for name in ("train", "val", "test"):
        assert len(pd.read_csv(data / "prepared" / f"{name}.csv")) > 0
    lr = json.loads((data / "lr_find/lr.json").read_text())
    assert lr["lr"] > 0 and lr["rule"]
    assert (data / "lr_find/curve.png").stat().st_size > 1000
    # The range test restores the model from a temporary checkpoint; none may linger.
    assert not list(root.rglob(".lr_find_*.ckpt"))
    assert not (root / "lightning_logs").exists()
    history = pd.read_csv(data / "train/history.csv")
    assert list(history.columns) == ["epoch", "train_nll", "val_nll", "lr"]
    assert 1 <= len(history) <= TINY["train"]["max_epochs"]
    summary = json.loads((data / "train/summary.json").read_text())
    assert summary["best_epoch"] == int(history["val_nll"].idxmin())

    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"model", "linear", "oracle", "nll_gap"}
    assert test["nll_gap"] == pytest.approx(test["model"]["nll"] - test["oracle"]["nll"])
    assert 0.5 < test["oracle"]["nll"] < 1.3
    assert np.isfinite(test["model"]["nll"]) and 0 <= test["model"]["picp_95"] <= 1
    assert "model" in metrics["val"]

    predictions = pd.read_csv(data / "evaluate/predictions.csv")
    assert {"x", "y", "mu", "sigma", "lower_95", "upper_95"} <= set(predictions.columns)
    assert len(predictions) == len(pd.read_csv(data / "prepared/test.csv"))
    assert (predictions["sigma"] > 0).all()
    for plot in ("prediction_band", "learning_curves", "calibration", "pit_histogram",
                 "sigma_vs_input"):
        assert (data / "evaluate/plots" / f"{plot}.png").stat().st_size > 1000


def test_store_holds_one_complete_run(root):
    assert (root / "mlflow.db").is_file()
    run = only_run(root)
    client = mlflow_client(root)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.batch_size"] == str(TINY["train"]["batch_size"])
    assert params["generate.n"] == str(TINY["generate"]["n"])
    assert float(params["lr_find.chosen_lr"]) > 0
    assert run.data.tags["git_commit"]

    history = pd.read_csv(root / "data/train/history.csv")
    val_curve = client.get_metric_history(run.info.run_id, "val_nll")
    assert [m.step for m in sorted(val_curve, key=lambda m: m.step)] == list(history["epoch"])
    np.testing.assert_allclose(sorted(m.value for m in val_curve), sorted(history["val_nll"]),
                               rtol=1e-6)
    assert len(client.get_metric_history(run.info.run_id, "lr")) == len(history)

    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())["test"]
    assert run.data.metrics["test_nll"] == pytest.approx(metrics["model"]["nll"])
    assert run.data.metrics["test_nll_gap"] == pytest.approx(metrics["nll_gap"])
    assert run.data.metrics["test_linear_nll"] == pytest.approx(metrics["linear"]["nll"])
    assert "test_picp_95" in run.data.metrics and "test_crps" in run.data.metrics

    artifacts = {a.path for folder in ("checkpoints", "plots", "lr_find", "evaluate")
                 for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"checkpoints/model.ckpt", "plots/prediction_band.png", "lr_find/curve.png",
            "evaluate/metrics.json", "evaluate/summary.md"} <= artifacts
    # Artifacts live in the git-ignored folder at the repository root.
    assert list((root / "mlartifacts").rglob("model.ckpt"))


def test_logged_model_serves_the_evaluated_predictions(root):
    import mlflow.pyfunc

    run = only_run(root)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["x"]
    predictions = pd.read_csv(root / "data/evaluate/predictions.csv")
    served = model.predict(predictions[["x"]])
    np.testing.assert_allclose(served["mu"], predictions["mu"], rtol=1e-6)
    np.testing.assert_allclose(served["sigma"], predictions["sigma"], rtol=1e-6)


def test_dvc_metrics_and_plots_render(root, tmp_path):
    shown = json.loads(dvc("metrics", "show", "--json", cwd=root).stdout)
    assert "nll" in json.dumps(shown)
    dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=root)
    html = (tmp_path / "plots/index.html").read_text()
    assert "history.csv" in html or "Learning curves" in html
    assert "prediction_band.png" in html


def all_runs(root):
    return search_all(mlflow_client(root))


def test_reruns_only_what_changed(root):
    assert stages_run(dvc("repro", cwd=root).stdout) == []

    before = only_run(root)
    edit_params(root, {"evaluate": {"interval_levels": [0.5, 0.9, 0.95]}})
    assert stages_run(dvc("repro", cwd=root).stdout) == ["evaluate"]
    after = only_run(root)  # still exactly one run: evaluate adds to the training run
    assert after.info.run_id == before.info.run_id
    assert "test_picp_90" in after.data.metrics and after.info.status == "FINISHED"

    edit_params(root, {"train": {"patience": 2}})
    assert stages_run(dvc("repro", cwd=root).stdout) == ["train", "evaluate"]
    edit_params(root, {"generate": {"seed": 5}})
    assert stages_run(dvc("repro", cwd=root).stdout) == STAGES
    runs = all_runs(root)
    assert len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.params["train.patience"] for run in runs} == {"2", "3"}


def test_bad_param_stops_with_one_message_and_loses_nothing(root):
    before = {run.info.run_id for run in all_runs(root)}
    checkpoint = (root / "data/train/model.ckpt").read_bytes()
    edit_params(root, {"train": {"patience": 0}})
    result = dvc("repro", cwd=root, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: params.yaml: 'train.patience': Input should be greater than or "
                      "equal to 1 (got 0)"], result.stderr
    assert {run.info.run_id for run in all_runs(root)} == before  # no run was opened
    assert (root / "data/train/model.ckpt").read_bytes() == checkpoint  # outputs persist
    edit_params(root, {"train": {"patience": 2}})
    assert stages_run(dvc("repro", cwd=root).stdout) == []


def test_diverging_training_fails_its_run_with_a_clear_message(root):
    import subprocess
    import sys

    from tests.conftest import tool_env

    before = {run.info.run_id for run in all_runs(root)}
    trained = {path.name: path.read_bytes() for path in (root / "data/train").glob("*.*")}
    lr_json = root / "data/lr_find/lr.json"
    choice = json.loads(lr_json.read_text())
    lr_json.write_text(json.dumps(choice | {"lr": 1e30}))
    try:
        result = subprocess.run([sys.executable, "stages/train.py"], cwd=root, env=tool_env(),
                                capture_output=True, text=True)
    finally:
        dvc("checkout", "--force", cwd=root)
    assert result.returncode == 2
    assert "learning rate is too high" in result.stderr.splitlines()[-1]
    new = [run for run in all_runs(root) if run.info.run_id not in before]
    assert [run.info.status for run in new] == ["FAILED"]
    # No checkpoint of the diverged run is presented as a trained model.
    assert {p.name: p.read_bytes() for p in (root / "data/train").glob("*.*")} == trained
    assert not list((root / "data").glob(".partial-*"))
    assert stages_run(dvc("repro", cwd=root).stdout) == []


def test_unreachable_tracking_server_is_a_clear_error_and_loses_nothing(root):
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    trained = {p.name: p.read_bytes() for p in (root / "data/train").glob("*.*")}
    uri = f"http://127.0.0.1:{port}"
    result = dvc("repro", "--force", "-s", "train", cwd=root, check=False,
                 MLFLOW_TRACKING_URI=uri)
    assert result.returncode != 0
    assert f"error: cannot use the MLflow tracking store at {uri}" in result.stderr
    assert {p.name: p.read_bytes() for p in (root / "data/train").glob("*.*")} == trained
    assert stages_run(dvc("repro", cwd=root).stdout) == []


def test_tracking_can_be_switched_off(clone):
    edit_params(clone, {"tracking": {"enabled": False}})
    result = dvc("repro", cwd=clone)
    assert stages_run(result.stdout) == ["train", "evaluate"]
    assert "nothing is logged to MLflow" in result.stdout
    assert json.loads((clone / "data/train/summary.json").read_text())["run_id"] is None
    assert "nll" in json.loads((clone / "data/evaluate/metrics.json").read_text())["test"]["model"]
    assert not (clone / "mlflow.db").exists() and not (clone / "mlartifacts").exists()
