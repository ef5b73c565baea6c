"""The tune stage's search space: each entry checked against the param it searches, and how a
trial draws its values. Imports neither Optuna nor the params schema (config.py checks
`tune.space` with it, handing over the sections the tuner may search).

An entry is a list of choices or a range {low, high, log}. Choices that are not plain scalars
(a list of layer sizes) go to Optuna as JSON text, which it records and compares as it must.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

DEFAULT_SPACE = {
    "model.hidden_sizes": [[16], [32], [32, 32], [64, 64]],
    "model.activation": ["silu", "tanh", "relu"],
    "train.weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
    "lr_find.fixed_lr": {"low": 1e-3, "high": 1e-2, "log": True},
}


class SearchRange(BaseModel):
    """A numeric range for the tuner: low..high, sampled on a log scale with `log`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class SearchSpace:
    entries: dict[str, SearchRange | list]  # in params.yaml's order: the order trials draw
    whole: frozenset[str]  # ranges over a param that takes whole numbers

    @classmethod
    def checked(cls, space: dict[str, Any], sections: dict[str, type[BaseModel]]) -> SearchSpace:
        """Each entry checked against the param it searches: the param exists in a tunable
        section, a range is numeric, non-empty and within what the param accepts, every
        choice is a value the param accepts. Raises ValueError naming the entry."""
        if not space:
            raise ValueError("space is empty: name at least one param to search")
        entries, whole = {}, set()
        for key, spec in space.items():
            section, _, name = str(key).partition(".")
            model = sections.get(section)
            if model is None or name not in model.model_fields:
                known = ", ".join(f"{s}.{n}" for s, m in sections.items() for n in m.model_fields)
                raise ValueError(f"space: unknown param '{key}'; the tuner can search: {known}")
            if isinstance(spec, dict):
                entries[key] = _search_range(key, spec, model, name)
                if model.model_fields[name].annotation is int:
                    whole.add(key)
            elif isinstance(spec, list) and spec:
                for choice in spec:
                    _accepts(key, model, name, choice)
                entries[key] = spec
            else:
                raise ValueError(f"space '{key}': give a non-empty list of choices or a range "
                                 f"{{low, high, log}} (got {spec!r})")
        return cls(entries, frozenset(whole))

    def suggest(self, trial) -> dict[str, object]:
        """An Optuna trial's value for every searched param."""
        values = {}
        for key, spec in self.entries.items():
            if isinstance(spec, SearchRange) and key in self.whole:
                values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
            elif isinstance(spec, SearchRange):
                values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
            elif _json_coded(spec):
                values[key] = json.loads(trial.suggest_categorical(
                    key, [json.dumps(choice) for choice in spec]))
            else:
                values[key] = trial.suggest_categorical(key, spec)
        return values

    def values(self, trial_params: dict[str, object]) -> dict[str, object]:
        """A finished trial's params as params.yaml values (JSON-coded choices decoded)."""
        return {key: json.loads(value) if _json_coded(self.entries.get(key)) else value
                for key, value in trial_params.items()}


def _json_coded(spec: SearchRange | list | None) -> bool:
    """Choices Optuna cannot hold as they are (it takes None, bool, int, float and str)."""
    return isinstance(spec, list) and not all(
        choice is None or isinstance(choice, bool | int | float | str) for choice in spec)


def _search_range(key: str, spec: dict, model: type[BaseModel], name: str) -> SearchRange:
    try:
        found = SearchRange.model_validate(spec)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in error.errors())
        raise ValueError(f"space '{key}': not a range {{low, high, log}}: {problems}") from None
    if not found.low < found.high:
        raise ValueError(f"space '{key}': empty or inverted range: low ({found.low}) must be "
                         f"below high ({found.high})")
    if found.log and found.low <= 0:
        raise ValueError(f"space '{key}': a log range needs low > 0 (got {found.low})")
    annotation = model.model_fields[name].annotation
    if annotation not in (int, float, float | None):
        raise ValueError(f"space '{key}': a range needs a numeric param; give a list of choices")
    for end in (found.low, found.high):
        if annotation is int and end != int(end):
            raise ValueError(f"space '{key}': the param takes whole numbers (got {end})")
        _accepts(key, model, name, int(end) if annotation is int else end)
    return found


def _accepts(key: str, model: type[BaseModel], name: str, value: object) -> None:
    """Raise, naming the search entry, unless the param accepts `value`."""
    try:
        model.model_validate(model().model_dump() | {name: value})
    except ValidationError as error:
        reason = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"space '{key}': {value!r} is not a value it accepts: {reason}") from None
