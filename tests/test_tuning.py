"""The tune stage: the search space's validation, the Optuna search on the real trainer, and
the stage in the real pipeline with the real MLflow store (nested runs, resume, two workers)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from deepnormal import tuning
from deepnormal.config import TUNABLE, parse_params
from deepnormal.data import NUMERIC
from deepnormal.errors import DeepnormalError
from deepnormal.prepared import Split
from deepnormal.search_space import SearchSpace
from deepnormal.tune_result import apply_tuned
from tests.conftest import (
    REPO,
    TINY,
    copy_repo,
    dvc,
    edit_params,
    mlflow_client,
    search_all,
    stages_run,
    tool_env,
)


def raw_params(base: dict | None = None, **tune) -> dict:
    """params.yaml with a tiny network and training, `base` ({section: {key: value}}) on
    top, and these tune settings."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"]["hidden_sizes"] = [8]
    raw["train"] |= {"max_epochs": 5, "patience": 1.0, "batch_size": 32}
    for section, values in (base or {}).items():
        raw[section] |= values
    raw["tune"] |= {"enabled": True} | tune
    return raw


def message_for(space: dict) -> str:
    with pytest.raises(DeepnormalError) as caught:
        parse_params(raw_params(space=space))
    return str(caught.value)


@pytest.mark.parametrize("space, expected", [
    ({"model.hiden_sizes": [[8]]}, "unknown param 'model.hiden_sizes'; the tuner can search: "
                                   "model.hidden_sizes, model.activation"),
    ({"train.weight_decay": {"low": 0.1, "high": 0.01}},
     "space 'train.weight_decay': empty or inverted range: low (0.1) must be below high (0.01)"),
    ({"train.weight_decay": {"low": 0.1, "high": 0.1}}, "empty or inverted range"),
    ({"train.weight_decay": []}, "give a non-empty list of choices or a range"),
    ({"model.activation": ["silu", "swish"]},
     "space 'model.activation': 'swish' is not a value it accepts: Input should be 'sigmoid'"),
    ({"model.hidden_sizes": {"low": 8, "high": 64}}, "a range needs a numeric param"),
    ({"train.batch_size": {"low": 16, "high": 64.5}}, "the param takes whole numbers (got 64.5)"),
    ({"train.patience": {"low": 0, "high": 10}}, "0 is not a value it accepts"),
    ({"train.weight_decay": {"low": 0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
    ({"train.weight_decay": {"min": 0, "max": 0.1}}, "not a range {low, high, log}"),
    ({}, "space is empty"),
])
def test_a_bad_search_space_is_one_message_naming_the_entry(space, expected):
    assert expected in message_for(space)


def test_the_winner_applies_on_top_of_params_yaml(tmp_path):
    params = parse_params(raw_params())
    best = tmp_path / "best.yaml"
    values = {"model.hidden_sizes": [16, 16], "train.weight_decay": 0.01}
    best.write_text(yaml.safe_dump({"params": values, "search": {"trial": 3}}))
    tuned, search = apply_tuned(params, best)
    assert tuned.model.hidden_sizes == [16, 16] and tuned.train.weight_decay == 0.01
    assert tuned.train.max_epochs == params.train.max_epochs and search == {"trial": 3}
    best.write_text(yaml.safe_dump({"params": {}, "search": {}}))  # tuning off
    assert apply_tuned(params, best) == (params, {})
    with pytest.raises(DeepnormalError, match="missing; run the tune stage"):
        apply_tuned(params, tmp_path / "none.yaml")
    best.write_text(yaml.safe_dump({"params": {"train.patience": 0}}))
    with pytest.raises(DeepnormalError, match="is not a tune stage result"):
        apply_tuned(params, best)


def splits() -> tuple[Split, Split]:
    def split(n: int, seed: int) -> Split:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-10, 10, n)
        return Split(pd.DataFrame({"x": x}), x + rng.normal(size=n) * (1 + abs(x) / 5),
                     {"x": NUMERIC})

    return split(150, 1), split(50, 2)


def search(tmp_path, store: str = "optuna.db", base: dict | None = None, **tune):
    """A search in this process on a tiny problem: (study, winner or the error)."""
    params = parse_params(raw_params(base, storage=f"sqlite:///{tmp_path / store}", **tune))
    study = tuning.open_study(params, "test")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return study, tuning.search(study, params, *splits())
        except DeepnormalError as error:
            return study, error


def summary(study) -> list[tuple]:
    return [(t.number, t.state.name, t.params, t.value) for t in study.trials]


# lr 10 with an exp scale link on raw (unstandardised) data diverges; with softplus it trains.
DIVERGING = {"lr_find.fixed_lr": [10.0], "model.scale_link": ["exp", "softplus"],
             "model.standardize": [False]}


def test_the_first_trial_is_params_yaml_and_a_diverging_trial_fails_but_the_search_goes_on(
        tmp_path):
    study, winner = search(tmp_path, trials=4, seed=0, space=DIVERGING)
    first, *others = study.trials
    assert first.params == {} and first.user_attrs[tuning.DEFAULTS_ATTR] is True
    assert first.state.name == "COMPLETE"
    states = [trial.state.name for trial in others]
    assert "FAIL" in states and "COMPLETE" in states and "RUNNING" not in states
    for trial in others:
        assert (trial.state.name == "FAIL") == (trial.params["model.scale_link"] == "exp")
        if trial.state.name == "FAIL":
            assert "became non-finite" in trial.user_attrs["error"]
    assert winner.val_nll in [t.value for t in study.trials if t.value is not None]


def test_the_per_point_nlls_average_to_the_trials_value_even_with_calibration(tmp_path):
    # choose() compares trials point by point: the points must score what the value does.
    study, _ = search(tmp_path, trials=2, base={"model": {"calibrate_sigma": True}},
                      space={"model.activation": ["tanh", "relu"]})
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert np.mean(trial.user_attrs[tuning.POINTS_ATTR]) == pytest.approx(trial.value,
                                                                               abs=1e-4)


def test_a_search_where_every_trial_fails_says_why(tmp_path):
    diverging = {"model": {"scale_link": "exp", "standardize": False},
                 "lr_find": {"fixed_lr": 10.0}}
    study, error = search(tmp_path, trials=2, base=diverging,
                          space={"model.activation": ["tanh", "relu"]})
    assert {trial.state.name for trial in study.trials} == {"FAIL"}
    assert str(error).startswith("no trial of the search completed; the first failure: the "
                                 "training loss became non-finite")


def test_same_seed_same_trials_and_a_resumed_study_adds_to_them(tmp_path):
    space = {"model.hidden_sizes": [[4], [8, 8]],
             "train.weight_decay": {"low": 1e-4, "high": 0.1, "log": True}}
    first, _ = search(tmp_path, "a.db", trials=3, space=space)
    first = summary(first)
    again, _ = search(tmp_path, "b.db", trials=3, space=space)
    assert summary(again) == first  # the same seed and data: the same trials
    resumed, _ = search(tmp_path, "a.db", trials=5, space=space)
    resumed = summary(resumed)
    assert resumed[:3] == first and [number for number, *_ in resumed] == [0, 1, 2, 3, 4]
    assert {state for _, state, *_ in resumed} == {"COMPLETE"}
    # A resumed study does not replay the trials it already ran.
    assert resumed[3][2] != first[1][2]


def chosen(values: dict[int, list[float]], space: dict) -> tuning.Winner:
    """choose() on a study of finished trials, in order: hidden size -> each validation
    point's NLL (0: params.yaml's own values, the first trial)."""
    study = optuna.create_study()
    for number, points in values.items():
        params = {} if number == 0 else {"model.hidden_sizes": json.dumps([number])}
        distributions = {} if number == 0 else {"model.hidden_sizes": optuna.distributions
                                                .CategoricalDistribution(["[1]", "[2]"])}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=float(np.mean(points)),
            user_attrs={tuning.POINTS_ATTR: points} | ({tuning.DEFAULTS_ATTR: True}
                                                     if number == 0 else {})))
    return tuning.choose(study, SearchSpace.checked(space, TUNABLE))


def test_another_trial_replaces_params_yaml_only_when_clearly_better():
    space = {"model.hidden_sizes": [[1], [2]]}
    rng = np.random.default_rng(0)
    defaults = list(rng.normal(2.0, 1.0, size=200))
    # Lower by luck: the same points plus noise, 0.01 lower on average.
    lucky = list(np.array(defaults) - 0.01 + rng.normal(0, 0.3, size=200))
    kept = chosen({0: defaults, 1: lucky}, space)
    assert (kept.trial, kept.values) == (0, {})
    assert "params.yaml's values (trial 0) kept" in kept.why
    # Clearly lower: 0.2 nats on every point.
    better = chosen({0: defaults, 2: list(np.array(defaults) - 0.2)}, space)
    assert (better.trial, better.values) == (1, {"model.hidden_sizes": [2]})  # JSON decoded
    assert "better than params.yaml's values" in better.why
    # params.yaml's values best outright.
    assert chosen({0: defaults, 1: list(np.array(defaults) + 0.2)}, space).values == {}


# --- the stage in the pipeline ---------------------------------------------------------------

TUNE = {"enabled": True, "trials": 3,
        "space": {"model.hidden_sizes": [[4], [8]],
                  "lr_find.fixed_lr": {"low": 3e-3, "high": 1e-2, "log": True}}}


def tune_runs(root):
    runs = search_all(mlflow_client(root))
    parents = [r for r in runs if r.data.tags.get("deepnormal.kind") == "tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return parents, children


def study_trials(root) -> list:
    (summary_,) = optuna.get_all_study_summaries(f"sqlite:///{root / 'optuna.db'}")
    return optuna.load_study(study_name=summary_.study_name,
                             storage=f"sqlite:///{root / 'optuna.db'}").trials


@pytest.mark.pipeline
def test_a_tuned_pipeline_tracks_every_trial_and_trains_the_winner(tmp_path):
    root = copy_repo(tmp_path)
    # params.yaml's own lr barely trains in six epochs: any searched lr is clearly better.
    edit_params(root, TINY | {"lr_find": {"fixed_lr": 1e-5}, "tune": TUNE})
    result = dvc("repro", cwd=root)
    assert stages_run(result.stdout) == ["generate", "tune", "lr_find", "train", "evaluate"]
    best = yaml.safe_load((root / "data/tune/best.yaml").read_text())
    assert set(best["params"]) == {"model.hidden_sizes", "lr_find.fixed_lr"}
    assert best["search"]["trial"] != 0 and "better than params.yaml's values" in best[
        "search"]["why"]
    assert (root / "data/tune/plots/optimization_history.png").stat().st_size > 1000

    (parent,), children = tune_runs(root)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_trial"] == str(best["search"]["trial"])
    assert sorted(int(c.data.tags["trial"]) for c in children) == [0, 1, 2]
    assert {c.data.tags["state"] for c in children} == {"complete"}
    assert all("val_nll" in c.data.metrics for c in children)
    (winner,) = [c for c in children if c.data.tags.get("best_trial") == "true"]
    assert winner.data.metrics["val_nll"] == pytest.approx(best["search"]["val_nll"])
    artifacts = {a.path for a in mlflow_client(root).list_artifacts(parent.info.run_id, "tune")}
    assert {"tune/best.yaml", "tune/optimization_history.png"} <= artifacts

    # The winner reached lr_find and train: the training run's params are the trial's.
    assert json.loads((root / "data/lr_find/lr.json").read_text())["lr"] == pytest.approx(
        best["params"]["lr_find.fixed_lr"])
    (trained,) = [r for r in search_all(mlflow_client(root))
                  if "tune.trial" in r.data.params]
    assert trained.data.params["tune.trial"] == str(best["search"]["trial"])
    assert trained.data.params["model.hidden_sizes"] == str(best["params"]["model.hidden_sizes"])
    assert trained.data.metrics["best_val_nll"] == pytest.approx(best["search"]["val_nll"])

    assert stages_run(dvc("repro", cwd=root).stdout) == []
    # More trials: the same study resumes, adding one.
    edit_params(root, {"tune": {"trials": 4}})
    more = dvc("repro", "-s", "tune", cwd=root)
    assert "3 of 4 trials done" in more.stdout
    assert [t.number for t in study_trials(root)] == [0, 1, 2, 3]
    assert len(tune_runs(root)[0]) == 1  # still one run for the search


def start_tune(root, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "stages/tune.py"], cwd=root, env=tool_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.pipeline
def test_an_interrupted_search_resumes_and_leaves_no_trial_running(tmp_path):
    root = copy_repo(tmp_path)
    # Trials long enough to interrupt one: 300 epochs each.
    edit_params(root, TINY | {"train": {"max_epochs": 300, "patience": 1.0},
                              "tune": TUNE | {"trials": 50, "prune": False}})
    dvc("repro", "generate", cwd=root)
    process = start_tune(root)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("trial   1 "):
            break
    time.sleep(1)  # into trial 2's training
    os.killpg(process.pid, signal.SIGINT)
    rest = process.communicate(timeout=120)[0]
    assert process.returncode == 2, "".join(seen) + rest
    assert "error: interrupted: the search is saved" in rest
    states = [t.state.name for t in study_trials(root)]
    assert "RUNNING" not in states and states.count("COMPLETE") >= 2
    (parent,), _ = tune_runs(root)
    assert parent.info.status == "KILLED"

    done = states.count("COMPLETE")
    edit_params(root, {"tune": {"trials": done + 1}})
    resumed = subprocess.run([sys.executable, "stages/tune.py"], cwd=root, env=tool_env(),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} of {done + 1} trials done" in resumed.stdout
    trials = study_trials(root)
    assert [t.state.name for t in trials].count("COMPLETE") == done + 1
    (parent,), children = tune_runs(root)  # the same run, finished now
    assert parent.info.status == "FINISHED"
    # A run per trial, the interrupted one (failed) included.
    assert sorted(int(c.data.tags["trial"]) for c in children) == [t.number for t in trials]
    assert "fail" in {c.data.tags["state"] for c in children}


@pytest.mark.pipeline
def test_two_workers_share_one_study(tmp_path):
    root = copy_repo(tmp_path)
    edit_params(root, TINY | {"tune": TUNE | {"trials": 6}})
    dvc("repro", "generate", cwd=root)
    workers = [start_tune(root)]
    time.sleep(1)
    workers.append(start_tune(root))
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all("trial " in output for output in outputs)  # both ran trials
    trials = study_trials(root)
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and 6 <= states.count("COMPLETE") <= 7
    (parent,), children = tune_runs(root)  # one run for the search, a nested run per trial
    assert len(children) == len(trials)


def test_a_trial_gets_one_run_whichever_worker_logs_it(tmp_path, monkeypatch):
    # Two workers: one's callback and the other's backfill may both see a finished trial
    # that has no run yet.
    import mlflow
    from mlflow.tracking import MlflowClient

    from deepnormal import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = tracking.connect("tune-test")
    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with mlflow.start_run(experiment_id=experiment_id) as parent:
        this_worker = tuning.TrialRuns(experiment_id, parent.info.run_id)
        other_worker = tuning.TrialRuns(experiment_id, parent.info.run_id)
        this_worker(study, study.trials[0])
        other_worker(study, study.trials[0])
        other_worker.backfill(study)  # adds trial 1 only
    children = MlflowClient().search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.tags["trial"] for run in children) == ["0", "1"]
    assert {run.data.params["x"] for run in children} == {str(t.params["x"])
                                                          for t in study.trials}


def test_an_unusable_storage_is_one_message_naming_it(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/folder/optuna.db"
    params = parse_params(raw_params(storage=url))
    with pytest.raises(DeepnormalError, match=f"cannot use the Optuna storage {url}: .*check "
                                              "tune.storage"):
        tuning.open_study(params, "test")
