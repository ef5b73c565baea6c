"""Faults on the real pipeline (docs/faults.md): bad params, damaged data between stages,
divergence, Ctrl-C and SIGKILL during training, a locked store. Each case checks the message
the user sees and that earlier outputs and the tracking store survive. (The wording of every
kind of bad param is tested without the pipeline, in test_config.py.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import (
    dvc,
    edit_params,
    error_lines,
    mlflow_client,
    outputs,
    restore_named,
    search_all,
    stages_run,
    start_long_training,
    tool_env,
)

pytestmark = pytest.mark.pipeline


def runs(root: Path):
    if not (root / "mlflow.db").exists():
        return []
    return search_all(mlflow_client(root))


def the_message(result: subprocess.CompletedProcess) -> str:
    """The one line that explains a failed `dvc repro`: the stage's own, or DVC's when DVC
    stops before the stage runs (a dependency or a declared param is missing)."""
    ours = error_lines(result.stderr)
    if ours:
        (message,) = ours
        return message
    (message,) = {line for line in result.stderr.splitlines() if line.startswith("ERROR: ")}
    return message


@pytest.mark.parametrize("case, text, expected", [
    # Every invalid value takes the same path (config.load_params, first thing in every
    # stage); test_config.py covers the message of each kind.
    ("out of range", "train:\n  patience: 200\n",
     "error: params.yaml: 'train.patience': Input should be less than or equal to 1 (got 200)"),
    # DVC reads the params each stage declares and names the missing ones first (the tune
    # stage, first to read `compute`, declares the whole section).
    ("missing section", "drop compute", "Parameters 'compute' are missing"),
])
def test_bad_params_stop_before_any_work(clone, case, text, expected):
    before = outputs(clone)
    path = clone / "params.yaml"
    if text == "drop compute":
        path.write_text(re.sub(r"(?ms)^compute:.*?(?=^\w)", "", path.read_text()))
    else:
        edit_params(clone, yaml.safe_load(text))
    result = dvc("repro", cwd=clone, check=False)
    assert result.returncode != 0
    assert expected in the_message(result), result.stderr
    restore_named(clone, the_message(result))
    assert outputs(clone) == before
    assert runs(clone) == []
    if text == "drop compute":  # DVC: "Parameters '...' are missing from 'params.yaml'"
        assert "are missing from 'params.yaml'" in the_message(result)
        # Run directly, the stage names the section itself.
        direct = subprocess.run([sys.executable, "stages/train.py"], cwd=clone,
                                env=tool_env(), capture_output=True, text=True)
        assert error_lines(direct.stderr) == [
            "error: params.yaml: missing section 'compute'; params.yaml needs: data, "
            "generate, model, train, compute, lr_find, evaluate, tracking, tune"], direct.stderr


def test_unreadable_params_file_names_the_file(clone):
    before = outputs(clone)
    (clone / "params.yaml").write_text("train: [unclosed\n")
    result = dvc("repro", cwd=clone, check=False)
    assert result.returncode != 0
    assert "params.yaml" in result.stderr  # DVC reads it first and names it
    # Run directly, the stage itself says where the YAML breaks.
    direct = subprocess.run([sys.executable, "stages/train.py"], cwd=clone, env=tool_env(),
                            capture_output=True, text=True)
    assert error_lines(direct.stderr) == [
        "error: params.yaml is not valid YAML at line 2, column 1: expected ',' or ']', "
        "but got '<stream end>'"], direct.stderr
    assert outputs(clone) == before and runs(clone) == []


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_compute_settings_the_machine_lacks_stop_before_a_run_opens(clone):
    edit_params(clone, {"compute": {"accelerator": "gpu"}})
    before = outputs(clone)
    result = subprocess.run([sys.executable, "stages/train.py"], cwd=clone, env=tool_env(),
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "error: params.yaml 'compute': No supported gpu backend found!"], result.stderr
    assert outputs(clone) == before and runs(clone) == []


def _rewritten(path, column: str, value) -> None:
    """The split with its first row's `column` set to `value` (as a user's edit might); a
    text value makes the column a text column, as a Parquet column has one type."""
    frame = pd.read_parquet(path)
    if isinstance(value, str):
        frame[column] = frame[column].astype(str)
    frame.loc[0, column] = value
    frame.to_parquet(path)


DAMAGE = {
    "missing": lambda path: path.unlink(),
    "empty": lambda path: path.write_text(""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "NaN": lambda path: _rewritten(path, "y", np.nan),
    "text": lambda path: _rewritten(path, "x", "abc"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_data_between_stages_stops_train_naming_the_file(clone, damage):
    original = (clone / "data/prepared/train.parquet").read_bytes()
    DAMAGE[damage](clone / "data/prepared/train.parquet")
    before = outputs(clone)
    result = dvc("repro", "-s", "train", cwd=clone, check=False)  # only train, not generate
    assert result.returncode != 0
    assert "data/prepared/train.parquet" in the_message(result), result.stderr
    restore_named(clone, the_message(result))
    assert outputs(clone) == before and runs(clone) == []
    # The full pipeline notices the damaged output and brings it back (from DVC's run-cache).
    dvc("repro", cwd=clone)
    assert (clone / "data/prepared/train.parquet").read_bytes() == original


def test_diverging_lr_fails_train_and_evaluate_never_runs(clone):
    before = outputs(clone)
    # An lr far beyond what params.yaml accepts (at most 10), planted in lr_find's output.
    lr_json = clone / "data/lr_find/lr.json"
    lr_json.write_text(json.dumps(json.loads(lr_json.read_text()) | {"lr": 1e30}))
    result = dvc("repro", "--downstream", "train", cwd=clone, check=False)
    assert result.returncode != 0
    assert stages_run(result.stdout) == ["train"]  # evaluate never ran
    (message,) = error_lines(result.stderr)
    assert "non-finite" in message and "learning rate is too high" in message, message
    assert [run.info.status for run in runs(clone)] == ["FAILED"]
    # No checkpoint of the diverged run is presented as a trained model; no scratch remains;
    # the command the message names brings the earlier checkpoint back, byte for byte.
    assert "data/train/model.ckpt" not in outputs(clone)
    assert message.endswith("; `dvc checkout train` restores this stage's earlier outputs")
    restore_named(clone, message)
    assert outputs(clone) == before | {"data/lr_find/lr.json": lr_json.read_bytes()}
    assert not list((clone / "data").glob(".partial-*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_training_loses_nothing_and_leaves_no_running_run(clone, sig):
    edit_params(clone, {"train": {"max_epochs": 4}})
    dvc("repro", cwd=clone)  # an earlier, finished experiment in the store
    (earlier,) = runs(clone)
    before = outputs(clone)

    process = start_long_training(clone)
    os.killpg(process.pid, sig)  # Ctrl-C in a terminal signals the whole process group
    rest = process.communicate(timeout=120)[0]
    assert process.returncode != 0
    after = outputs(clone)
    if sig == signal.SIGINT:
        assert "error: interrupted: the MLflow run is marked KILLED" in rest, rest
        assert "`dvc checkout train` restores this stage's earlier outputs" in rest, rest
        statuses = {run.info.run_id: run.info.status for run in runs(clone)}
        assert sorted(statuses.values()) == ["FINISHED", "KILLED"]
    else:  # nothing could clean up: the run stays RUNNING and scratch files remain for now
        assert [run.info.status for run in runs(clone)].count("RUNNING") == 1
        after = {name: data for name, data in after.items() if "/.partial-" not in name}
    # No half-written checkpoint in place: DVC removed the earlier one before the stage ran,
    # and its cache gives it back.
    assert "data/train/model.ckpt" not in after
    dvc("checkout", "train", cwd=clone)
    after = {name: data for name, data in outputs(clone).items() if "/.partial-" not in name}
    assert after == before

    # A configuration never run before (4 epochs would come back from DVC's run-cache).
    edit_params(clone, {"train": {"max_epochs": 5}})
    rerun = dvc("repro", cwd=clone)
    assert stages_run(rerun.stdout) == ["tune", "train", "evaluate"]
    statuses = {run.info.run_id: run.info.status for run in runs(clone)}
    assert statuses[earlier.info.run_id] == "FINISHED"
    assert sorted(statuses.values()) == ["FINISHED", "FINISHED", "KILLED"], statuses
    if sig == signal.SIGKILL:
        assert "marked MLflow run" in rerun.stdout and "KILLED" in rerun.stdout
    assert not list((clone / "data").glob(".partial-*"))
    assert stages_run(dvc("repro", cwd=clone).stdout) == []


def test_locked_store_is_a_clear_error_within_seconds(clone):
    edit_params(clone, {"train": {"max_epochs": 2}})
    dvc("repro", cwd=clone)
    before = outputs(clone)
    edit_params(clone, {"train": {"max_epochs": 3}})
    holder = sqlite3.connect(clone / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holding the whole database
    try:
        start = time.monotonic()
        result = dvc("repro", cwd=clone, check=False)
        waited = time.monotonic() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    (message,) = error_lines(result.stderr)
    assert "database is locked" in message and "another process" in message, message
    assert waited < 60
    restore_named(clone, message)
    assert outputs(clone) == before
    assert [run.info.status for run in runs(clone)] == ["FINISHED"]


def test_evaluate_with_the_store_gone_says_how_to_recover(clone):
    # The clone has no store: the run recorded by train is not there.
    result = dvc("repro", "--force", "-s", "evaluate", cwd=clone, check=False)
    (message,) = error_lines(result.stderr)
    assert "is not in the MLflow store" in message and "dvc repro --force -s train" in message
