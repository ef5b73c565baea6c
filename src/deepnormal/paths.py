"""Where each stage reads and writes, relative to the repository root (see dvc.yaml)."""

from pathlib import Path

DATA = Path("data")
PREPARED = DATA / "prepared"          # generate: train.parquet, val.parquet, test.parquet
TUNE = DATA / "tune"                  # tune: best.yaml, plots/
LR_FIND = DATA / "lr_find"            # lr_find: lr.json, curve.csv, curve.png
TRAIN = DATA / "train"                # train: model.ckpt, history.csv, summary.json
EVALUATE = DATA / "evaluate"          # evaluate: metrics.json, predictions.csv, plots/...

TUNED = TUNE / "best.yaml"
LR_JSON = LR_FIND / "lr.json"
LR_CURVE = LR_FIND / "curve.csv"
LR_PLOT = LR_FIND / "curve.png"
CHECKPOINT = TRAIN / "model.ckpt"
HISTORY = TRAIN / "history.csv"
TRAIN_SUMMARY = TRAIN / "summary.json"
