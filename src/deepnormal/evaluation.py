"""Scoring the trained model and its baselines on the held-out splits, and drawing it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal import metrics, plots, synthetic
from deepnormal.baselines import LinearGaussian
from deepnormal.config import Params
from deepnormal.data import CATEGORICAL, Split
from deepnormal.peers import PEERS, fit_peer
from deepnormal.predict import with_intervals
from deepnormal.preprocessing import Encoded
from deepnormal.trained import TrainedModel

# A predictor maps a split (its raw table and the model's encoding of it, made once) to the
# Normal (loc, scale) of the transformed target; every predictor of one evaluation shares the
# model's family (the line is fitted on the same scale, so the comparison stays fair).
Predictor = Callable[[pd.DataFrame, Encoded], tuple[np.ndarray, np.ndarray]]
Predictions = dict[str, tuple[np.ndarray, np.ndarray]]  # predictor name -> (loc, scale)
SCORED_SPLITS = ("test", "val")


def predictors(model: TrainedModel, splits: dict[str, Split], params: Params,
               synthetic_data: bool) -> dict[str, Predictor]:
    """The model; without its variance calibration when it has one; the homoscedastic
    linear baseline (least squares on the encoded inputs, fitted to the transformed target);
    the peers evaluate.peers names (fitted on train, early-stopped on val); and, for
    synthetic data, the oracle."""
    train = splits["train"]
    design = model.encoder.design
    linear = LinearGaussian.fit(design(model.encode(train.frame)),
                                model.family.transform(train.target))
    found = {"model": lambda frame, encoded: model.predict_encoded(encoded).params}
    if model.sigma_scale != 1.0:
        found["model_uncalibrated"] = (
            lambda frame, encoded: model.predict_encoded(encoded, calibrated=False).params)
    found["linear"] = lambda frame, encoded: linear.predict(design(encoded))
    for name in params.evaluate.peers:
        peer = fit_peer(name, train, splits["val"], model.family)
        found[name] = lambda frame, encoded, peer=peer: peer.predict(frame)
    if synthetic_data:
        g = params.generate

        def oracle(frame: pd.DataFrame, encoded: Encoded) -> tuple[np.ndarray, np.ndarray]:
            x = frame.iloc[:, 0].to_numpy()
            return synthetic.true_mean(x, g), synthetic.true_sigma(x, g)

        found["oracle"] = oracle
    return found


def predict_all(split: Split, encoded: Encoded,
                predictors: dict[str, Predictor]) -> Predictions:
    """Every predictor on one split, once: scores, tables and plots all reuse the result."""
    return {name: predict(split.frame, encoded) for name, predict in predictors.items()}


def score_split(split: Split, predictions: Predictions, levels: list[float], family,
                members: tuple[np.ndarray, np.ndarray] | None = None,
                encoded: Encoded | None = None) -> dict:
    """One section per predictor, plus the model's NLL gap to the oracle when there is one.
    With the ensemble members' predictions, the model's section also holds the exact
    mixture NLL (`mixture_nll`) beside the NLL of its moment-matched Gaussian (`nll`); with
    the split's encoding, the count of cells that went to the unknown category and that were
    filled."""
    section = {}
    for name, (loc, scale) in predictions.items():
        section[name] = metrics.score(split.target, loc, scale, levels, family)
    if members is not None:
        section["model"]["mixture_nll"] = metrics.mixture_nll(split.target, *members, family)
    if encoded is not None:
        section["model"]["unknown_categories"] = sum(encoded.unknown.values())
        section["model"]["filled_cells"] = sum(encoded.filled.values())
    if "oracle" in section:
        section["nll_gap"] = section["model"]["nll"] - section["oracle"]["nll"]
    return section


def evaluate(model: TrainedModel, splits: dict[str, Split], params: Params,
             levels: list[float]) -> tuple[dict, dict[str, Predictions]]:
    """Score the model and its baselines on the test and validation splits: (the report
    written to metrics.json, the predictions per split for tables and plots)."""
    found = predictors(model, splits, params, params.data.source == "synthetic")
    report, predicted = {}, {}
    for name in SCORED_SPLITS:
        encoded = model.encode(splits[name].frame)
        predicted[name] = predict_all(splits[name], encoded, found)
        report[name] = score_split(splits[name], predicted[name], levels, model.family,
                                   model.predict_members(encoded), encoded)
    report["calibration"] = {"sigma_scale": model.sigma_scale,
                             "ensemble_size": model.ensemble_size}
    report["family"] = model.family.name
    return report, predicted


def quality_warning(report: dict) -> str | None:
    """A warning when the model does worse than the homoscedastic line on the validation
    split: its predicted distributions should then not be trusted."""
    model, line = report["val"]["model"]["nll"], report["val"]["linear"]["nll"]
    if model <= line:
        return None
    return (f"the model's validation NLL ({model:.4f}) is worse than the homoscedastic "
            f"line's ({line:.4f}): do not trust its predicted uncertainty. Try more weight "
            "decay (-S train.weight_decay=0.01), a smaller network "
            "(-S 'model.hidden_sizes=[16]'), or rerun the lr search if its result is stale "
            "(dvc repro --force -s lr_find)")


def mlflow_metrics(report: dict) -> dict[str, float]:
    """Flat names for MLflow: test_nll, test_picp_95, test_linear_nll, test_nll_gap, and
    val_split_* for the validation split (val_nll is the per-epoch training curve)."""
    flat = {}
    for split in SCORED_SPLITS:
        section = report[split]
        prefix = "test" if split == "test" else "val_split"
        for predictor, values in section.items():
            if not isinstance(values, dict):
                flat[f"{prefix}_{predictor}"] = values
                continue
            infix = "" if predictor == "model" else f"{predictor}_"
            for key, value in values.items():
                flat[f"{prefix}_{infix}{key}"] = value
    return flat


def predictions_table(split: Split, family, loc: np.ndarray, scale: np.ndarray,
                      levels: list[float]) -> pd.DataFrame:
    table = split.frame.copy()
    table[split.target_name] = split.target
    return with_intervals(table, family, loc, scale, levels)


def calibration_table(split: Split, predictions: Predictions, family) -> pd.DataFrame:
    """Nominal vs observed quantile coverage per predictor, the data of the DVC plot."""
    table = pd.DataFrame({"nominal": metrics.CALIBRATION_LEVELS})
    for name, (loc, scale) in predictions.items():
        table[name] = metrics.calibration_curve(split.target, loc, scale, family=family)
    return table


def draw(test: Split, predictions: Predictions, model: TrainedModel, history: list[dict],
         train_summary: dict, out_dir: Path, max_points: int, synthetic_data: bool,
         params: Params) -> list[Path]:
    """Every evaluation figure. Quantities a reader compares across families are drawn in
    the target's units: the predictive mean, its std and its central intervals. One numeric
    feature gets the band and sigma(x) plots (the model evaluated on a grid); a table with
    categorical columns gets the predicted std per category of the first one."""
    family = model.family
    loc, scale = predictions["model"]
    mean, std = family.mean(loc, scale), family.std(loc, scale)
    bounds = metrics.interval(loc, scale, 0.95, family)
    curves = {name: metrics.calibration_curve(test.target, *predicted, family=family)
              for name, predicted in predictions.items()}
    paths = [
        plots.learning_curves(history, train_summary["best_epoch"],
                              train_summary["stopped_early"], out_dir / "learning_curves.png"),
        plots.calibration(metrics.CALIBRATION_LEVELS, curves, out_dir / "calibration.png"),
        plots.pit_histogram(metrics.pit(test.target, loc, scale, family),
                            out_dir / "pit_histogram.png"),
        plots.observed_vs_predicted(test.target, mean, bounds,
                                    out_dir / "observed_vs_predicted.png", max_points),
        plots.sigma_vs_error(test.target, mean, std, out_dir / "sigma_vs_error.png",
                             max_points),
    ]
    categorical = [name for name, kind in test.kinds.items() if kind == CATEGORICAL]
    if categorical:
        name = categorical[0]
        paths.append(plots.sigma_per_category(test.frame[name], std, name, test.target_name,
                                              out_dir / "sigma_per_category.png"))
    if test.frame.shape[1] == 1 and not categorical:
        name = test.feature_names[0]
        x = test.frame[name].to_numpy(dtype=float)
        grid = np.linspace(np.nanmin(x), np.nanmax(x), 500)
        grid_prediction = model.predict(pd.DataFrame({name: grid}))
        bands = {level: grid_prediction.interval(level) for level in (0.6827, 0.9545)}
        true_mu = true_sigma = None
        if synthetic_data:
            true_mu = synthetic.true_mean(grid, params.generate)
            true_sigma = synthetic.true_sigma(grid, params.generate)
        names = (name, test.target_name)
        paths.append(plots.prediction_band(x, test.target, grid, grid_prediction.mean(), bands,
                                           out_dir / "prediction_band.png", names, true_mu,
                                           true_sigma, max_points))
        paths.append(plots.sigma_vs_input(grid, grid_prediction.std(),
                                          out_dir / "sigma_vs_input.png", names[0], true_sigma))
    return paths


def summary_markdown(report: dict, train_summary: dict, warning: str | None = None) -> str:
    test = report["test"]
    calibration = report["calibration"]
    lines = [
        "# deepnormal run summary",
        "",
        *([f"**Warning: {warning}.**", ""] if warning else []),
        f"- learning rate: {train_summary['lr']:.4g} ({train_summary['lr_rule']})",
        f"- epochs run: {train_summary['epochs_run']}, best epoch: {train_summary['best_epoch']}",
        f"- ensemble of {calibration['ensemble_size']} network(s); sigma scaled by "
        f"{calibration['sigma_scale']:.4f} (fitted on the validation split; 1: none)",
        f"- predictive family: {report['family']} (every score in the target's own units)",
        f"- exact mixture NLL of the members on the test split: "
        f"{test['model']['mixture_nll']:.4f} (the table scores the one distribution predicted)",
        f"- test cells filled (empty): {test['model']['filled_cells']}; categories never seen "
        f"in training (or too rare there): {test['model']['unknown_categories']}",
        "",
        "| predictor | test NLL | CRPS | RMSE | 95% coverage | calibration error |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in test.items():
        if isinstance(values, dict):
            lines.append(
                f"| {name} | {values['nll']:.4f} | {values['crps']:.4f} | {values['rmse']:.4f} "
                f"| {values.get('picp_95', float('nan')):.3f} | {values['calibration_error']:.4f} |"
            )
    if "nll_gap" in test:
        lines += ["", f"NLL gap to the oracle: **{test['nll_gap']:.4f} nats**"]
    verdict = peer_verdict(test)
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines) + "\n"


def peer_verdict(test: dict) -> str | None:
    """Is the network worth it on this table? The model's test NLL against the best peer's
    (None when no peer was scored)."""
    scored = [name for name in PEERS if name in test]
    if not scored:
        return None
    best = min(scored, key=lambda name: test[name]["nll"])
    difference = test["model"]["nll"] - test[best]["nll"]
    side = "better" if difference < 0 else "worse"
    return (f"the model against the best peer ({best}): {difference:+.4f} nats of test NLL "
            f"per point (the model is {side}; one split: compare over several seeds before "
            f"deciding)")
