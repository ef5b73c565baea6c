"""data/tune/best.yaml: the tune stage's winner, written by the tune stage and applied on top
of params.yaml by the lr_find and train stages. No torch, no Optuna."""

from __future__ import annotations

from pathlib import Path

import yaml

from deepnormal.config import Params
from deepnormal.errors import DeepnormalError, first_line

HEADER = ("# Written by the tune stage: the best trial's values, applied on top of params.yaml\n"
          "# by the lr_find and train stages (empty: tuning is off).\n")


def write_result(path: Path, values: dict, search: dict) -> None:
    """The winner's values (`params`; empty: params.yaml as it is) and what the search was."""
    body = yaml.safe_dump({"params": values, "search": search}, sort_keys=False)
    path.write_text(HEADER + body)


def apply_tuned(params: Params, path: Path | str) -> tuple[Params, dict]:
    """params.yaml's params with the tune stage's winner on top (its file `path`), and what
    the file says of the search (trial, study, val_nll; empty when tuning is off)."""
    path = Path(path)
    try:
        found = yaml.safe_load(path.read_text())
        values, search = found["params"] or {}, found.get("search") or {}
        return params.with_values(values), search
    except OSError:
        raise DeepnormalError(f"{path} is missing; run the tune stage (`dvc repro`)") from None
    except (yaml.YAMLError, TypeError, KeyError, ValueError) as error:
        raise DeepnormalError(f"{path} is not a tune stage result ({first_line(error)}); "
                              "rerun it: `dvc repro --force -s tune`") from None
