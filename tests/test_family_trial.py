"""model.distribution auto chooses the family by the data (family_choice.py, family_trial.py):
what the generate stage offers, the re-scoring proxy, and the trial on the real trainer;
then one table with many zeros through `dvc repro`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deepnormal.config import load_params
from deepnormal.data import NUMERIC
from deepnormal.family_choice import choose_family
from deepnormal.family_trial import MIN_SHAPE_ROWS, PROXY_MARGIN, shape_gains, try_families
from deepnormal.inference import load_model
from deepnormal.prepared import Split
from tests.conftest import REPO, TINY, copy_repo, dvc, edit_params, mlflow_client, search_all


def split(n: int, seed: int, noise: str) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    draws = {"normal": rng.normal(size=n), "t": rng.standard_t(2.0, n)}[noise]
    return Split(pd.DataFrame({"x": x}), np.sin(x) + 0.5 * draws, {"x": NUMERIC})


def test_what_the_generate_stage_offers_depends_on_the_support():
    signed = split(300, 0, "normal")
    assert choose_family("auto", signed, False).candidates == ("studentt", "johnsonsu")
    zeros = Split(signed.frame, np.maximum(signed.target, 0.0), signed.kinds)
    offered = choose_family("auto", zeros, False, zero_share=0.4).candidates
    assert offered == ("zerolognormal", "studentt", "johnsonsu")
    assert choose_family("studentt", signed, False).candidates == ()  # a named family


def test_the_proxy_sees_heavy_tails_and_not_normal_noise():
    rng = np.random.default_rng(0)
    loc, scale = rng.normal(size=4000), rng.uniform(0.5, 2.0, 4000)
    normal = loc + scale * rng.normal(size=4000)
    heavy = loc + scale * rng.standard_t(2.5, 4000)
    flat = shape_gains(loc, scale, normal, ("studentt", "johnsonsu"))
    assert all(abs(gain) < PROXY_MARGIN for gain in flat.values()), flat
    tails = shape_gains(loc, scale, heavy, ("studentt", "johnsonsu"))
    assert all(gain > 5 * PROXY_MARGIN for gain in tails.values()), tails


def tiny():
    return load_params(REPO / "params.yaml").with_values({
        "model.hidden_sizes": [8], "model.ensemble_size": 2, "train.max_epochs": 60,
        "train.batch_size": 64})


@pytest.mark.parametrize("noise, kept", [("t", {"studentt", "johnsonsu"}), ("normal",
                                                                            {"normal"})])
def test_the_trial_trains_what_may_pay_and_keeps_what_the_validation_split_prefers(
        tmp_path, noise, kept):
    from deepnormal.training import fit

    params = tiny()
    train, val = split(800, 1, noise), split(400, 2, noise)
    first = fit(params, train, val, 0.01, tmp_path, progress=False)
    said = []
    result, trial = try_families(params, train, val, 0.01, tmp_path, first,
                                 ("studentt", "johnsonsu"), said.append)
    assert trial.chosen in kept, trial.line()
    assert trial.score == "nll"
    model = load_model(tmp_path / "model.ckpt")  # the kept family's, where it always is
    assert model.family.name == trial.chosen == result.encoder.family.name
    if noise == "normal":  # neither shape promised anything: nothing more was trained
        assert set(trial.untried) == {"studentt", "johnsonsu"} and list(trial.scores) == [
            "normal"]
    else:
        assert trial.scores[trial.chosen] < trial.scores["normal"] - 0.01
        predicted = model.predict(val.frame).distribution
        assert np.isfinite(predicted.frame([0.5, 0.95]).drop(columns="std").to_numpy()).all()


def test_too_few_validation_rows_try_no_shape(tmp_path):
    from deepnormal.training import fit

    params = tiny().with_values({"train.max_epochs": 5})
    train, val = split(400, 1, "t"), split(MIN_SHAPE_ROWS - 1, 2, "t")
    first = fit(params, train, val, 0.01, tmp_path, progress=False)
    said = []
    result, trial = try_families(params, train, val, 0.01, tmp_path, first,
                                 ("studentt", "johnsonsu"), said.append)
    assert result is first and trial.chosen == "normal" and list(trial.scores) == ["normal"]
    assert set(trial.untried) == {"studentt", "johnsonsu"}
    assert f"{MIN_SHAPE_ROWS - 1} validation rows" in said[0]


# --- a table with many zeros, through the pipeline -----------------------------------------

@pytest.mark.pipeline
def test_many_zeros_are_offered_a_point_mass_and_crps_decides(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    x = rng.uniform(0, 3, n)
    spent = np.where(rng.uniform(size=n) < 0.15 + 0.2 * x, 0.0,
                     np.exp(1 + 0.5 * x + 0.4 * rng.normal(size=n)))
    root = copy_repo(tmp_path)
    pd.DataFrame({"x": x, "spent": spent.round(2)}).to_csv(root / "examples/spent.csv",
                                                           index=False)
    edit_params(root, TINY | {"data": {"source": "file", "path": "examples/spent.csv",
                                       "features": ["x"], "target": "spent"},
                              "model": TINY["model"] | {"shape": "per_row"}})
    result = dvc("repro", cwd=root)
    assert "family trial: training zerolognormal" in result.stdout
    summary = json.loads((root / "data/train/summary.json").read_text())
    trial = summary["family_trial"]
    assert trial["score"] == "crps" and {"normal", "zerolognormal"} <= set(trial["scores"])
    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    assert metrics["family"] == trial["chosen"]
    assert f"family: {trial['chosen']} (auto, by validation CRPS" in result.stdout
    assert "chosen by the validation CRPS" in (root / "data/evaluate/summary.md").read_text()
    (run,) = search_all(mlflow_client(root))
    assert run.data.tags["family"] == trial["chosen"]
    assert run.info.run_name.startswith(f"spent-{trial['chosen']}-")
    assert {f"family_val_crps.{name}" for name in trial["scores"]} <= set(run.data.metrics)
    # Each family's curves under its prefix; the unprefixed ones are the kept model's.
    history = pd.read_csv(root / "data/train/history.csv")
    client = mlflow_client(root)
    for name in trial["scores"]:
        assert client.get_metric_history(run.info.run_id, f"{name}.val_nll")
    kept = sorted(client.get_metric_history(run.info.run_id, "val_nll"), key=lambda m: m.step)
    np.testing.assert_allclose([m.value for m in kept], history["val_nll"], rtol=1e-6)
    predictions = pd.read_csv(root / "data/evaluate/predictions.csv")
    assert np.isfinite(predictions[["mean", "median", "lower_95", "upper_95"]]).all().all()
