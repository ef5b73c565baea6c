"""End to end: the real `dvc repro` on a tiny configuration, the real MLflow store.

Tests in this module read one shared pipeline run (see conftest.pipeline); a test that edits
params or reruns stages does so in a private copy (`clone`), so their order does not matter
(`pytest --reverse` runs them backwards).
"""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import (
    TINY,
    dvc,
    edit_params,
    mlflow_client,
    search_all,
    stages_run,
)

pytestmark = pytest.mark.pipeline
STAGES = ["generate", "tune", "lr_find", "train", "evaluate"]


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
        assert len(pd.read_parquet(data / "prepared" / f"{name}.parquet")) > 0
    # Tuning is off by default: an empty result, and no study anywhere.
    assert yaml.safe_load((data / "tune/best.yaml").read_text()) == {"params": {}, "search": {}}
    assert not (root / "optuna.db").exists()
    lr = json.loads((data / "lr_find/lr.json").read_text())
    assert lr["lr"] > 0 and lr["rule"]
    assert (data / "lr_find/curve.png").stat().st_size > 1000
    # The range test restores the model from a temporary checkpoint; none may linger.
    assert not list(root.rglob(".lr_find_*.ckpt"))
    assert not (root / "lightning_logs").exists()
    history = pd.read_csv(data / "train/history.csv")
    assert list(history.columns) == ["epoch", "train_nll", "val_nll", "val_nll_kept", "lr"]
    assert 1 <= len(history) <= TINY["train"]["max_epochs"]
    summary = json.loads((data / "train/summary.json").read_text())
    assert summary["best_epoch"] == int(history["val_nll_kept"].idxmin())
    # Each member's kept weights come from an epoch up to the checkpoint's.
    assert all(0 <= epoch <= summary["best_epoch"] for epoch in summary["member_best_epochs"])

    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"model", "model_uncalibrated", "linear", "oracle", "nll_gap"}
    assert test["nll_gap"] == pytest.approx(test["model"]["nll"] - test["oracle"]["nll"])
    # The default ensemble and its calibration factor, fitted on the validation split.
    calibration = metrics["calibration"]
    assert calibration["ensemble_size"] == 5 and calibration["sigma_scale"] == pytest.approx(
        summary["sigma_scale"])
    assert test["model_uncalibrated"]["sharpness"] * calibration["sigma_scale"] == pytest.approx(
        test["model"]["sharpness"])
    assert test["model"]["mixture_nll"] > 0
    assert 0.5 < test["oracle"]["nll"] < 1.3
    assert np.isfinite(test["model"]["nll"]) and 0 <= test["model"]["picp_95"] <= 1
    assert "model" in metrics["val"]

    predictions = pd.read_csv(data / "evaluate/predictions.csv")
    assert {"x", "y", "mu", "sigma", "lower_95", "upper_95"} <= set(predictions.columns)
    assert len(predictions) == len(pd.read_parquet(data / "prepared/test.parquet"))
    assert (predictions["sigma"] > 0).all()
    for plot in ("prediction_band", "learning_curves", "calibration", "pit_histogram",
                 "sigma_vs_input"):
        assert (data / "evaluate/plots" / f"{plot}.png").stat().st_size > 1000


def test_a_model_worse_than_the_line_is_flagged_but_the_stage_succeeds(root, pipeline):
    _, result = pipeline
    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())["val"]
    worse = metrics["model"]["nll"] > metrics["linear"]["nll"]
    summary = (root / "data/evaluate/summary.md").read_text()
    tag = only_run(root).data.tags["quality_warning"]
    assert ("warning: the model's validation NLL" in result.stdout) == worse
    assert ("worse than the homoscedastic line" in summary) == worse
    assert (tag != "none") == worse


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

    # Only the stage's own files: not the .gitignore DVC writes beside them.
    assert {a.path for a in client.list_artifacts(run.info.run_id, "lr_find")} == {
        "lr_find/lr.json", "lr_find/curve.csv", "lr_find/curve.png"}
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
    for column in ("mean", "median", "std", "lower_95", "upper_95"):
        np.testing.assert_allclose(served[column], predictions[column], rtol=1e-6)
    np.testing.assert_allclose(served["mu"], predictions["mu"], rtol=1e-6)
    np.testing.assert_allclose(served["sigma"], predictions["sigma"], rtol=1e-6)


def test_dvc_metrics_and_plots_render(root, tmp_path):
    shown = json.loads(dvc("metrics", "show", "--json", cwd=root).stdout)
    assert "nll" in json.dumps(shown)
    dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=root)
    html = (tmp_path / "plots/index.html").read_text()
    assert "history.csv" in html or "Learning curves" in html
    assert "prediction_band.png" in html


def test_reruns_only_what_changed(root, clone):
    assert stages_run(dvc("repro", cwd=root).stdout) == []  # the shared run: nothing to do

    # tune reads the train section too (its trials start from it); when tuning is off it
    # only writes an empty result, and lr_find, which does not read train.patience, stays.
    edit_params(clone, {"train": {"patience": 0.4}})
    assert stages_run(dvc("repro", cwd=clone).stdout) == ["tune", "train", "evaluate"]
    trained = only_run(clone)
    edit_params(clone, {"evaluate": {"interval_levels": [0.5, 0.9, 0.95]}})
    assert stages_run(dvc("repro", cwd=clone).stdout) == ["evaluate"]
    evaluated = only_run(clone)  # still exactly one run: evaluate adds to the training run
    assert evaluated.info.run_id == trained.info.run_id
    assert "test_picp_90" in evaluated.data.metrics and evaluated.info.status == "FINISHED"

    edit_params(clone, {"generate": {"seed": 5}})
    assert stages_run(dvc("repro", cwd=clone).stdout) == STAGES
    runs = search_all(mlflow_client(clone))
    assert len(runs) == 2 and {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.params["generate.seed"] for run in runs} == {"0", "5"}
    assert stages_run(dvc("repro", cwd=clone).stdout) == []


def test_unreachable_tracking_server_is_a_clear_error_and_loses_nothing(clone):
    import socket

    root = clone
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    trained = {p.name: p.read_bytes() for p in (root / "data/train").glob("*.*")}
    uri = f"http://127.0.0.1:{port}"
    result = dvc("repro", "--force", "-s", "train", cwd=root, check=False,
                 MLFLOW_TRACKING_URI=uri)
    assert result.returncode != 0
    assert f"error: cannot use the MLflow tracking store at {uri}" in result.stderr
    # DVC removed the stage's outputs before running it; the command the line names restores.
    assert "`dvc checkout train` restores this stage's earlier outputs" in result.stderr
    dvc("checkout", "train", cwd=root)
    assert {p.name: p.read_bytes() for p in (root / "data/train").glob("*.*")} == trained
    assert stages_run(dvc("repro", cwd=root).stdout) == []


def test_tracking_can_be_switched_off(clone):
    edit_params(clone, {"tracking": {"enabled": False}})
    result = dvc("repro", cwd=clone)
    assert stages_run(result.stdout) == ["tune", "train", "evaluate"]
    assert "nothing is logged to MLflow" in result.stdout
    assert json.loads((clone / "data/train/summary.json").read_text())["run_id"] is None
    assert "nll" in json.loads((clone / "data/evaluate/metrics.json").read_text())["test"]["model"]
    assert not (clone / "mlflow.db").exists() and not (clone / "mlartifacts").exists()
