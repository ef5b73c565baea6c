"""Shared fixtures. The end-to-end pipeline runs once per test session (stage processes
import torch and Lightning, which is slow here) and every test that needs it shares it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# The repository copies and commands the benchmarks use too.
from benchmarks.workspace import REPO, copy_repo, dvc, edit_params, run, tool_env  # noqa: F401

# A configuration small enough to train in seconds but still exercising every stage.
TINY = {
    "generate": {"n": 240},
    # Calibration is off by default; the tiny runs exercise it end to end.
    "model": {"hidden_sizes": [8], "calibrate_sigma": True},
    "train": {"batch_size": 32, "max_epochs": 6, "patience": 0.5},
    "lr_find": {"num_steps": 20},
    "evaluate": {"plot_max_points": 100},
}


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true",
                     help="run the collected tests in reverse order (proves they do not "
                          "depend on their order)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


def stages_run(output: str) -> list[str]:
    """Names of the stages a `dvc repro` actually executed, from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A copy of the project with the tiny configuration, not yet run."""
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    edit_params(root, TINY)
    return root


@pytest.fixture(scope="session")
def pipeline(tiny_repo, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The tiny pipeline after one full `dvc repro` (a snapshot is kept for `clone`)."""
    result = dvc("repro", cwd=tiny_repo)
    shutil.copytree(tiny_repo, pristine_path(tmp_path_factory), symlinks=True)
    return tiny_repo, result


@pytest.fixture(scope="session")
def pristine(pipeline, tmp_path_factory) -> Path:
    """The tiny pipeline as it was right after its first run; never modified."""
    return pristine_path(tmp_path_factory)


def pristine_path(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "pristine"


def clone_of(pristine: Path, destination: Path) -> Path:
    """A private copy of the pristine pipeline (outputs, dvc.lock, DVC cache, git history)
    with an empty tracking store of its own."""
    shutil.copytree(pristine, destination, symlinks=True,
                    ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    return destination


@pytest.fixture
def clone(pristine, tmp_path) -> Path:
    return clone_of(pristine, tmp_path / "repo")


def outputs(root: Path, scratch: bool = True) -> dict[str, bytes]:
    """Every stage output, byte for byte; `scratch=False` leaves out the scratch folders of a
    stage that did not finish (data/.partial-*)."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted((root / "data").rglob("*"))
            if path.is_file() and (scratch or "/.partial-" not in str(path))}


def restore_named(root: Path, message: str) -> None:
    """Run `dvc checkout STAGE` for the stage a failure names, if it names one (ours: "`dvc
    checkout train` restores ..."; DVC's own: "failed to reproduce 'tune'"): DVC removed
    that stage's outputs before running it, and this brings them back."""
    named = re.search(r"`dvc checkout (\w+)` restores|failed to reproduce '(\w+)'", message)
    if named:
        dvc("checkout", named.group(1) or named.group(2), cwd=root)


def error_lines(output: str) -> list[str]:
    """The stages' own one-line messages in a command's output."""
    return [line for line in output.splitlines() if line.startswith("error: ")]


def default_ctrl_c() -> None:
    """Ctrl-C as a terminal delivers it, even when this test runs under a shell that ignores
    SIGINT for its background jobs (Python then never installs its KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_long_training(root: Path, command: list[str] | None = None,
                        **env: str) -> subprocess.Popen:
    """`dvc repro` (or `command`) with a train stage long enough to interrupt; returns once
    it trains."""
    edit_params(root, {"train": {"max_epochs": 100_000, "max_steps": 10**9, "patience": 1.0}})
    process = subprocess.Popen(command or [sys.executable, "-m", "dvc", "repro"], cwd=root,
                               env=tool_env(**env), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=default_ctrl_c)
    for line in process.stdout:
        if line.startswith("epoch    1/"):  # the first progress line: the run is open
            return process
    raise AssertionError(f"training never started (exit {process.wait()})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], url: str, cwd: Path, log: Path, timeout: float = 180, **env: str):
    """Start a server (its own process group), wait until `url` answers, stop it after."""
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=tool_env(**env), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{cmd} exited ({process.returncode}):\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    message = f"{url} not up after {timeout} s:\n{log.read_text()}"
                    raise AssertionError(message) from None
                time.sleep(1)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def mlflow_client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def search_all(client) -> list:
    """Every run in every experiment of the client's store."""
    return client.search_runs([e.experiment_id for e in client.search_experiments()])
