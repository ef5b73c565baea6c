"""Reproducible the way DVC users expect (docs/experiments.md): an experiment changes one line
of params.yaml, and going back to a configuration that already ran restores its outputs from
DVC's run-cache without training, byte for byte, with no new MLflow run."""

import json
import shutil

import pytest

from tests.conftest import REPO, TINY, dvc, mlflow_client, outputs, run, search_all, stages_run

pytestmark = pytest.mark.pipeline


def git(root, *args: str) -> str:
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
               root).stdout


def in_dvc_style(root) -> None:
    """The repository's own params.yaml with the tiny configuration set by DVC's writer, so
    the file is the one users edit, in the style `dvc exp run -S` keeps."""
    from dvc.utils.hydra import apply_overrides

    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    apply_overrides(root / "params.yaml", [f"{section}.{key}={json.dumps(value)}"
                                           for section, values in TINY.items()
                                           for key, value in values.items()])


def test_an_experiment_changes_one_line_and_going_back_restores_without_training(clone):
    in_dvc_style(clone)
    assert stages_run(dvc("repro", cwd=clone).stdout) == []  # the same values as before
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "the tiny pipeline, run")
    before = outputs(clone)

    experiment = dvc("exp", "run", "-S", "train.max_epochs=3", cwd=clone)
    assert "train" in stages_run(experiment.stdout)
    changed = [line for line in git(clone, "diff", "-U0", "params.yaml").splitlines()
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 2 and "max_epochs: 3" in changed[1], changed
    assert len(search_all(mlflow_client(clone))) == 1

    git(clone, "checkout", "params.yaml")
    back = dvc("repro", cwd=clone)
    assert stages_run(back.stdout) == [] and "epoch " not in back.stdout, back.stdout
    assert "skipping run, checking out outputs" in back.stdout
    assert outputs(clone) == before  # the checkpoint and everything else, byte for byte
    assert len(search_all(mlflow_client(clone))) == 1  # no new MLflow run
    assert git(clone, "status", "--porcelain") == ""  # dvc.lock and the metrics as committed
