"""Stage `evaluate`: score the best checkpoint on the held-out splits and draw it.

Reads params `evaluate`, `generate` and data.source (the oracle exists only for synthetic
data); the splits; data/train/model.ckpt (loaded weights-only), history.csv, summary.json.
Writes data/evaluate/:
  metrics.json     one section per split and predictor (model; model_uncalibrated, without
                   the variance calibration; linear baseline; the peers evaluate.peers
                   names, catboost and ngboost; oracle), `calibration`
                   (the sigma scale, the ensemble size) and `family`; the model's section
                   counts the cells filled and the categories unseen in training
                   (unknown_categories); every score in the target's own units; the DVC
                   metrics
  predictions.csv  test inputs, target, predictive mean, median, std, mu, sigma and
                   interval bounds
  calibration.csv  observed vs nominal quantile coverage (a DVC plot)
  summary.md       a short markdown report
When the model scores worse than the homoscedastic line on the validation split, it says so
(printed, in summary.md and as the run tag quality_warning) and suggests what to try; the
stage still succeeds.
  plots/*.png      prediction band, learning curves, calibration, PIT, sigma plots, the
                   predicted std per category of the first categorical column
Logs the metrics (test_nll, test_crps, test_picp_95, ...), plots and files into the
training run in MLflow (unless it was trained with tracking.enabled false).
"""

import argparse

from deepnormal import evaluation, paths, tracking
from deepnormal.config import load_params
from deepnormal.errors import run_stage
from deepnormal.inference import load_model
from deepnormal.outputs import staged
from deepnormal.prepared import read_splits
from deepnormal.train_summary import TrainingRecord


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    params = load_params()
    p = params.evaluate
    splits = read_splits(paths.PREPARED)
    training = TrainingRecord.read(paths.TRAIN)
    model = load_model(paths.CHECKPOINT)

    synthetic_data = params.data.source == "synthetic"  # only then is there an oracle
    found = evaluation.evaluate(model, splits, params, p.interval_levels)
    report = found.report
    warning = evaluation.quality_warning(report)
    with staged(paths.EVALUATE) as scratch:
        (scratch / "metrics.json").write_text(report.to_json())
        table, prefix = evaluation.predictions_table(splits["test"], found.model["test"],
                                                     p.interval_levels)
        table.to_csv(scratch / "predictions.csv", index=False)
        evaluation.calibration_table(splits["test"], found.predicted["test"]).to_csv(
            scratch / "calibration.csv", index=False)
        evaluation.draw(splits["test"], found.predicted["test"], model, training,
                        scratch / "plots", p.plot_max_points,
                        params.generate if synthetic_data else None)
        (scratch / "summary.md").write_text(
            evaluation.summary_markdown(report, training, p.interval_levels, warning))
    out = paths.EVALUATE

    test = report.test
    gap = f", gap to oracle {test['nll_gap']:.4f}" if "nll_gap" in test else ""
    print(f"test NLL {test['model']['nll']:.4f}{gap}, "
          f"95% coverage {test['model'].get('picp_95', float('nan')):.3f}")
    note = found.model["test"].note()
    if note:
        print(f"test split: {note}")
    off = evaluation.coverage_warning(test["model"], p.interval_levels)
    if off:
        print(f"warning: {off}")
    if prefix:
        print(f"predictions.csv: a column of the table shares a name with an output column, "
              f"so the outputs are named {prefix}mean, {prefix}std, ...")
    verdict = evaluation.peer_verdict(test)
    if verdict:
        print(verdict)
    if warning:
        print(f"warning: {warning}")

    run_id = training.summary.run_id
    if run_id is None:  # trained with tracking.enabled false
        print("the model was trained without tracking: nothing is logged to MLflow")
        return
    # Local outputs are in place before the store is touched: store trouble loses nothing.
    tracking.find_run(run_id, paths.TRAIN_SUMMARY)
    import mlflow

    # Reopens the training run; on an exception the context manager marks it FAILED.
    with (tracking.recording_failures("evaluating"), mlflow.start_run(run_id=run_id),
          tracking.killed_on_interrupt()):
        mlflow.set_tags(tracking.owner_tags())
        mlflow.log_metrics(evaluation.mlflow_metrics(report))
        tracking.log_dataset(splits["test"], params, "test")
        record_settings(run_id, p.model_dump())
        mlflow.set_tag("quality_warning", warning or "none")
        mlflow.log_artifacts(str(out / "plots"), "plots")
        for name in ("metrics.json", "summary.md", "predictions.csv", "calibration.csv"):
            mlflow.log_artifact(str(out / name), "evaluate")


def record_settings(run_id: str, settings: dict) -> None:
    """evaluate's settings as params of the run, beside the training params. MLflow keeps a
    param's first value: an evaluate-only rerun with other settings records them as tags
    (evaluate.<key>) and says so."""
    import mlflow

    values = {f"evaluate.{key}": str(value) for key, value in settings.items()}
    logged = mlflow.get_run(run_id).data.params
    changed = sorted(key for key, value in values.items() if logged.get(key, value) != value)
    if not changed:
        mlflow.log_params(values)
        return
    mlflow.set_tags(values)
    print(f"{', '.join(changed)} differ from the run's params (MLflow keeps a param's first "
          "value): this evaluation's settings are the run's evaluate.* tags")


if __name__ == "__main__":
    run_stage(main)
