"""Scoring the trained model and its baselines on the held-out splits, and drawing it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepnormal import metrics, plots, synthetic
from deepnormal.baselines import line
from deepnormal.config import GenerateParams, Params
from deepnormal.data import CATEGORICAL, NUMERIC
from deepnormal.family import Normal
from deepnormal.inference import Prediction, TrainedModel
from deepnormal.peers import PEERS, fit_peer
from deepnormal.predictive import Predictive, level_tag
from deepnormal.prepared import Split
from deepnormal.preprocessing import Encoded
from deepnormal.train_summary import TrainingRecord

# A predictor maps a split (its raw table and the model's encoding of it, made once) to a
# predictive distribution; every predictor of one evaluation shares the model's family (the
# line is fitted on the same scale, so the comparison stays fair).
Predictor = Callable[[pd.DataFrame, Encoded], Predictive]
Predictions = dict[str, Predictive]  # predictor name -> its distribution per row
SCORED_SPLITS = ("test", "val")


@dataclass(frozen=True)
class Report:
    """metrics.json: per scored split, one section of scores per predictor (and the model's
    gap to the oracle, `nll_gap`, when there is one); the calibration; the family."""

    test: dict
    val: dict
    calibration: dict  # sigma_scale, ensemble_size
    family: str

    def to_json(self) -> str:
        content = {"test": self.test, "val": self.val, "calibration": self.calibration,
                   "family": self.family}
        return json.dumps(content, indent=2) + "\n"


def predictors(model: TrainedModel, splits: dict[str, Split], params: Params,
               synthetic_data: bool) -> dict[str, Predictor]:
    """The model; without its variance calibration when it has one; the homoscedastic
    linear baseline (least squares on the encoded inputs, fitted to the transformed target);
    the peers evaluate.peers names (fitted on train, early-stopped on val); and, for
    synthetic data, the oracle."""
    train, family = splits["train"], model.family
    design = model.encoder.design
    linear = line(family, design(model.encode(train.frame)), train.target)
    found = {"model": lambda frame, encoded: model.distribution(encoded)}
    if model.sigma_scale != 1.0:
        found["model_uncalibrated"] = (
            lambda frame, encoded: model.distribution(encoded, calibrated=False))
    found["linear"] = lambda frame, encoded: linear(design(encoded))
    # The peers model a Normal: of log y beside a log-normal model, of y beside the rest.
    peer_family = family if family.ensemble == "moments" else Normal
    for name in params.evaluate.peers:
        peer = fit_peer(name, train, splits["val"], peer_family)
        found[name] = lambda frame, encoded, peer=peer: peer.predict(frame)
    if synthetic_data:
        found["oracle"] = lambda frame, encoded: oracle(frame, params.generate)
    return found


def oracle(frame: pd.DataFrame, generate: GenerateParams) -> Predictive:
    """The true distribution of the synthetic data."""
    x = frame.iloc[:, 0].to_numpy()
    return Normal(synthetic.true_mean(x, generate), synthetic.true_sigma(x, generate))


def score_split(split: Split, predictions: Predictions, levels: list[float],
                members: Predictive | None = None, encoded: Encoded | None = None) -> dict:
    """One section per predictor, plus the model's NLL gap to the oracle when there is one.
    With the ensemble members' distributions, the model's section also holds the exact
    mixture NLL (`mixture_nll`) beside the NLL of its moment-matched distribution (`nll`);
    with the split's encoding, the count of cells that went to the unknown category, that
    were filled, and that lay beyond the training range (held near it)."""
    section = {name: metrics.score(split.target, predictive, levels)
               for name, predictive in predictions.items()}
    if members is not None:
        section["model"]["mixture_nll"] = metrics.mixture_nll(split.target, members)
    if encoded is not None:
        section["model"]["unknown_categories"] = sum(encoded.unknown.values())
        section["model"]["filled_cells"] = sum(encoded.filled.values())
        section["model"]["out_of_range_cells"] = sum(encoded.outside.values())
    if "oracle" in section:
        section["nll_gap"] = section["model"]["nll"] - section["oracle"]["nll"]
    return section


@dataclass(frozen=True)
class Evaluated:
    """What evaluate found: the report, and per scored split every predictor's distribution
    and the model's prediction (with what its encoding met) for tables and plots."""

    report: Report
    predicted: dict[str, Predictions]
    model: dict[str, Prediction]


def evaluate(model: TrainedModel, splits: dict[str, Split], params: Params,
             levels: list[float]) -> Evaluated:
    """Score the model and its baselines on the test and validation splits."""
    found = predictors(model, splits, params, params.data.source == "synthetic")
    sections, predicted, predictions = {}, {}, {}
    for name in SCORED_SPLITS:
        split = splits[name]
        encoded = model.encode(split.frame)
        predicted[name] = {label: predict(split.frame, encoded)
                           for label, predict in found.items()}
        predictions[name] = Prediction(predicted[name]["model"], encoded.unknown,
                                       encoded.filled, encoded.outside, encoded.row_outside)
        sections[name] = score_split(split, predicted[name], levels, model.members(encoded),
                                     encoded)
    calibration = {"sigma_scale": model.sigma_scale, "ensemble_size": model.ensemble_size}
    report = Report(sections["test"], sections["val"], calibration, model.family.name)
    return Evaluated(report, predicted, predictions)


def quality_warning(report: Report) -> str | None:
    """A warning when the model does worse than the homoscedastic line on the validation
    split: its predicted distributions should then not be trusted."""
    model, line = report.val["model"]["nll"], report.val["linear"]["nll"]
    if model <= line:
        return None
    return (f"the model's validation NLL ({model:.4f}) is worse than the homoscedastic "
            f"line's ({line:.4f}): do not trust its predicted uncertainty. Try more weight "
            "decay (-S train.weight_decay=0.01), a smaller network "
            "(-S 'model.hidden_sizes=[16]'), or rerun the lr search if its result is stale "
            "(dvc repro --force -s lr_find)")


def mlflow_metrics(report: Report) -> dict[str, float]:
    """Flat names for MLflow: test_nll, test_picp_95, test_linear_nll, test_nll_gap, and
    val_split_* for the validation split (val_nll is the per-epoch training curve)."""
    flat = {}
    for prefix, section in (("test", report.test), ("val_split", report.val)):
        for predictor, values in section.items():
            if not isinstance(values, dict):
                flat[f"{prefix}_{predictor}"] = values
                continue
            infix = "" if predictor == "model" else f"{predictor}_"
            for key, value in values.items():
                flat[f"{prefix}_{infix}{key}"] = value
    return flat


# Output columns take this prefix in predictions.csv when a column of the table has the
# same name as one of them (a feature called `mean`).
CLASH_PREFIX = "pred_"


def predictions_table(split: Split, prediction: Prediction,
                      levels: list[float]) -> tuple[pd.DataFrame, str]:
    """The split's inputs and target with the model's predictions beside them, and the
    prefix the prediction columns took (empty unless a table column shares a name)."""
    table = split.frame.copy()
    table[split.target_name] = split.target
    names = Prediction.output_columns(prediction.distribution, levels)
    prefix = CLASH_PREFIX if set(names) & set(table.columns) else ""
    return prediction.beside(table, levels, prefix), prefix


def calibration_table(split: Split, predictions: Predictions) -> pd.DataFrame:
    """Nominal vs observed quantile coverage per predictor, the data of the DVC plot."""
    table = pd.DataFrame({"nominal": metrics.CALIBRATION_LEVELS})
    for name, predictive in predictions.items():
        table[name] = metrics.calibration_curve(split.target, predictive)
    return table


def draw(test: Split, predictions: Predictions, model: TrainedModel, training: TrainingRecord,
         out_dir: Path, max_points: int, truth: GenerateParams | None = None) -> list[Path]:
    """Every evaluation figure. Quantities a reader compares across families are drawn in
    the target's units: the predictive mean, its std and its central intervals. One numeric
    feature gets the band and sigma(x) plots (the model evaluated on a grid, with the true
    curves of the synthetic process `truth` when given); a table with categorical columns
    gets the predicted std per category of the first one."""
    predictive = predictions["model"]
    with np.errstate(over="ignore", invalid="ignore"):  # drawn where they exist
        mean, std = (np.where(np.isfinite(v), v, np.nan)
                     for v in (predictive.mean(), predictive.std()))
    curves = {name: metrics.calibration_curve(test.target, predicted)
              for name, predicted in predictions.items()}
    summary = training.summary
    paths = [
        plots.learning_curves(training.history, summary.best_epoch, summary.stopped_early,
                              out_dir / "learning_curves.png"),
        plots.calibration(metrics.CALIBRATION_LEVELS, curves, out_dir / "calibration.png"),
        plots.pit_histogram(metrics.pit(test.target, predictive), out_dir / "pit_histogram.png"),
        plots.observed_vs_predicted(test.target, mean, predictive.interval(0.95),
                                    out_dir / "observed_vs_predicted.png", max_points),
    ]
    spread = np.isfinite(std).any()  # a Student-t with df <= 2 everywhere has no std to draw
    if spread:
        paths.append(plots.sigma_vs_error(test.target, mean, std, out_dir / "sigma_vs_error.png",
                                          max_points))
    categorical = [name for name, kind in test.kinds.items() if kind == CATEGORICAL]
    if categorical and spread:
        name = categorical[0]
        paths.append(plots.sigma_per_category(test.frame[name], std, name, test.target_name,
                                              out_dir / "sigma_per_category.png"))
    if list(test.kinds.values()) == [NUMERIC]:
        name = test.feature_names[0]
        x = test.frame[name].to_numpy(dtype=float)
        grid = np.linspace(np.nanmin(x), np.nanmax(x), 500)
        on_grid = model.predict(pd.DataFrame({name: grid})).distribution
        bands = {level: on_grid.interval(level) for level in (0.6827, 0.9545)}
        true_mu = true_sigma = None
        if truth is not None:
            true_mu = synthetic.true_mean(grid, truth)
            true_sigma = synthetic.true_sigma(grid, truth)
        names = (name, test.target_name)
        paths.append(plots.prediction_band(x, test.target, grid, on_grid.mean(), bands,
                                           out_dir / "prediction_band.png", names, true_mu,
                                           true_sigma, max_points))
        paths.append(plots.sigma_vs_input(grid, on_grid.std(), out_dir / "sigma_vs_input.png",
                                          names[0], true_sigma))
    return paths


# A central interval whose test coverage is further than this from its level gets a line
# of its own in the summary and the stage's output.
COVERAGE_TOLERANCE = 0.05


def coverage_warning(section: dict, levels: list[float]) -> str | None:
    """One line naming each central interval whose coverage is off by more than the
    tolerance (e.g. "the 50% interval holds 69% of the test points"), or None."""
    off = [f"the {level:.0%} interval holds {section[f'picp_{level_tag(level)}']:.0%}"
           for level in levels
           if abs(section[f"picp_{level_tag(level)}"] - level) > COVERAGE_TOLERANCE]
    if not off:
        return None
    return (f"{'; '.join(off)} of the test points (more than {COVERAGE_TOLERANCE:.0%} from "
            "the level): the predicted spread, or its shape, does not fit this table")


def summary_markdown(report: Report, training: TrainingRecord, levels: list[float],
                     warning: str | None = None) -> str:
    test, calibration, summary = report.test, report.calibration, training.summary
    trial = summary.family_trial
    family = f"- predictive family: {report.family} (every score in the target's own units)"
    if trial:
        scores = ", ".join(f"{name} {value:.4f}" for name, value in trial["scores"].items())
        untried = "".join(f"; {name} not trained" for name in trial["untried"])
        family = (f"- predictive family: {report.family}, chosen by the validation "
                  f"{trial['score'].upper()} ({scores}{untried}); every score in the "
                  "target's own units")
    lines = [
        "# deepnormal run summary",
        "",
        *([f"**Warning: {warning}.**", ""] if warning else []),
        f"- learning rate: {summary.lr:.4g} ({summary.lr_rule})",
        f"- epochs run: {summary.epochs_run}, best epoch: {summary.best_epoch}",
        f"- ensemble of {calibration['ensemble_size']} network(s); sigma scaled by "
        f"{calibration['sigma_scale']:.4f} (fitted on the validation split; 1: none)",
        family,
        f"- exact mixture NLL of the members on the test split: "
        f"{test['model']['mixture_nll']:.4f} (the table scores the one distribution predicted)",
        f"- test cells filled (empty): {test['model']['filled_cells']}; categories never seen "
        f"in training (or too rare there): {test['model']['unknown_categories']}; numbers or "
        f"dates beyond the training range (held within one std of it): "
        f"{test['model']['out_of_range_cells']}",
        "",
        "| predictor | test NLL | CRPS | RMSE | "
        + " | ".join(f"{level:.0%} coverage" for level in levels) + " | calibration error |",
        "|---|---|---|---|" + "---|" * len(levels) + "---|",
    ]
    for name, values in test.items():
        if isinstance(values, dict):
            covered = " | ".join(f"{values[f'picp_{level_tag(level)}']:.3f}" for level in levels)
            lines.append(f"| {name} | {values['nll']:.4f} | {values['crps']:.4f} | "
                         f"{values['rmse']:.4f} | {covered} | "
                         f"{values['calibration_error']:.4f} |")
    off = coverage_warning(test["model"], levels)
    if off:
        lines += ["", f"**Coverage: {off}.**"]
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
