"""The train stage's MLflow run, kept by a helper process beside training.

Importing MLflow and its SQL store takes 2-3 s per stage on our machines, and SQLite writes
are slow: done in the training process, tracking was about a sixth of the train stage on
defaults (benchmarks/performance.py). The helper does all its slow work (importing MLflow
and torch, opening the store) while the training process imports torch and Lightning, which
leaves a core free; during training, when both cores train, it only takes the per-epoch rows;
at the end it logs the artifacts and the model. The stage waits for it, so the store is
complete when the stage exits; every error still reaches the user as one message from the
training process, and a store that cannot be used stops the stage before training starts.

The run ends FINISHED after `finish`, FAILED when training raises, KILLED on Ctrl-C or when
the training process disappears (the helper ignores Ctrl-C and hears the pipe close).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path

from deepnormal.errors import INTERRUPTED, DeepnormalError, first_line

# How long the training process waits for the helper to close the run on the way out.
END_TIMEOUT_S = 120


class RunLogger:
    """The training process's side: start it early, `open_run` once training is sure to
    start, `epoch` per row, `finish` with the outputs; use it as a context manager so that
    any way out of the block ends the run with the right status."""

    def __init__(self, experiment_name: str) -> None:
        # spawn, not fork: the helper must not inherit torch's threads or CUDA state.
        context = multiprocessing.get_context("spawn")
        self._conn, helper_end = context.Pipe()
        self._helper = context.Process(target=_serve, name="deepnormal-mlflow",
                                       args=(helper_end, experiment_name, os.getpid()))
        self._helper.start()
        helper_end.close()
        self.run_id: str | None = None

    def open_run(self, run_name: str | None, params: dict, inputs: list[tuple]) -> str:
        """Start the run (params, data set inputs, lr-finder files); waits for it."""
        self.run_id = self._call("open", run_name, params, inputs)
        return self.run_id

    def epoch(self, row: dict) -> None:
        try:
            self._conn.send(("epoch", row))
        except OSError:
            raise self._stopped() from None

    def finish(self, metrics: dict, tags: dict, artifacts: list[tuple[Path, str]],
               model: tuple[Path, object]) -> None:
        """Final metrics, tags, artifacts (path, folder) and the servable model
        (checkpoint, example inputs); returns once they are in the store."""
        self._call("finish", metrics, tags, artifacts, model)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt | SystemExit)
        status = "FINISHED" if kind is None else "KILLED" if interrupted else "FAILED"
        try:
            if self.run_id is not None:
                self._conn.send(("end", status))
                if self._conn.poll(END_TIMEOUT_S):
                    self._conn.recv()
        except (OSError, EOFError):
            pass  # the helper is gone; the next training start closes its run
        finally:
            self._conn.close()
            self._helper.join(END_TIMEOUT_S)
        if interrupted and self.run_id is not None:
            raise DeepnormalError(INTERRUPTED) from None

    def _call(self, *message):
        try:
            self._conn.send(message)
            kind, value = self._conn.recv()
        except (OSError, EOFError):
            raise self._stopped() from None
        if kind == "error":
            raise DeepnormalError(value)
        return value

    def _stopped(self) -> DeepnormalError:
        self._helper.join(5)
        return DeepnormalError(
            f"the MLflow logging process stopped (exit code {self._helper.exitcode}); the run "
            "is left unfinished and the next training run marks it KILLED; earlier outputs "
            "are unchanged"
        )


def _serve(conn, experiment_name: str, owner_pid: int) -> None:
    """The helper process: one MLflow run, driven by messages from the training process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the training process decides the status
    # MLflow's progress bars for a few small artifacts are noise in the stage's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        from deepnormal import serving, tracking

        experiment_id = tracking.connect(experiment_name)
        # All the slow imports happen now, while the training process imports torch and
        # Lightning on one core; during training both cores are busy training.
        serving.prepare()
    except Exception as error:
        _answer_with_error(conn, error)
        return
    try:
        _, run_name, params, inputs = conn.recv()
    except EOFError:  # the stage stopped before training (a bad compute setting...)
        return
    try:
        run_id = _start_run(experiment_id, run_name, owner_pid)
    except Exception as error:
        conn.send(("error", _message(error)))
        return
    conn.send(("ok", run_id))  # training starts now; the rest is logged beside it
    _log_until_end(conn, run_id, params, inputs)
    # Everything is in the store. Skipping the interpreter's teardown (torch, MLflow,
    # SQLAlchemy: about 2 s here) is time the stage would otherwise wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _answer_with_error(conn, error: Exception) -> None:
    try:
        conn.recv()
        conn.send(("error", _message(error)))
    except (EOFError, OSError):
        pass


def _message(error: Exception) -> str:
    if isinstance(error, DeepnormalError):
        return str(error)
    return f"MLflow logging failed: {type(error).__name__}: {first_line(error, 300)}"


def _start_run(experiment_id: str, run_name: str | None, owner_pid: int) -> str:
    import mlflow

    from deepnormal import tracking

    for run_id in tracking.close_dead_runs(experiment_id):
        print(f"marked MLflow run {run_id} KILLED: its training process died without closing it",
              flush=True)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                           tags=tracking.run_tags(owner_pid))
    return run.info.run_id


def _log_inputs(params: dict, inputs: list[tuple]) -> None:
    import mlflow

    from deepnormal import paths, tracking

    mlflow.log_params(params)
    for split, data_params, context in inputs:
        tracking.log_dataset(split, data_params, context)
    mlflow.log_artifacts(str(paths.LR_FIND), "lr_find")


def _log_until_end(conn, run_id: str, params: dict, inputs: list[tuple]) -> None:
    """Log the inputs, then the epochs as they come; answer `finish`; end the run."""
    import mlflow

    from deepnormal import tracking

    epochs = tracking.EpochLogger(run_id)
    status = "KILLED"  # unless the training process says otherwise before it disappears
    failure = None  # kept for the training process's next question
    try:
        _log_inputs(params, inputs)
    except Exception as error:
        failure = _message(error)
    try:
        while True:
            try:
                kind, *args = conn.recv()
            except EOFError:
                break
            if kind == "epoch":
                epochs(*args)
                continue
            if kind == "end":
                status = args[0]
                break
            try:
                if failure is None:
                    epochs.send()  # the curves are complete before anything else is logged
                    _finish(*args)
            except Exception as error:
                failure = _message(error)
            conn.send(("error", failure) if failure else ("ok", None))
    finally:
        epochs.send()
        mlflow.end_run(status)
        try:
            conn.send(("ok", status))
        except OSError:
            pass


def _finish(metrics: dict, tags: dict, artifacts: list[tuple[Path, str]],
            model: tuple[Path, object]) -> None:
    import mlflow

    from deepnormal import serving

    mlflow.log_metrics(metrics)
    mlflow.set_tags(tags)
    for path, folder in artifacts:
        mlflow.log_artifact(str(path), folder)
    serving.log_model(*model)
