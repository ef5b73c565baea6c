"""params.yaml, loaded once through one validated schema.

Every stage calls `load_params()` before doing any work, so a typo, a wrong type or an
out-of-range value stops the pipeline with one message naming the key and what it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepnormal.errors import DeepnormalError, first_line

PARAMS_FILE = Path("params.yaml")
FILE_SUFFIXES = (".csv", ".parquet", ".pq")


class _Section(BaseModel):
    # strict: no silent "64" -> 64 or true -> 1; ints are still accepted where floats are.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GenerateParams(_Section):
    seed: int = Field(0, ge=0)
    n: int = Field(2000, ge=20)
    x_low: float = -10.0
    x_high: float = 10.0
    intercept: float = -0.5
    slope: float = 1.3
    cos_amplitude: float = 3.0
    cos_frequency: float = 0.5
    noise_offset: float = 1.0
    noise_amplitude: float = 1.0
    noise_frequency: float = 0.4
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> GenerateParams:
        if self.x_low >= self.x_high:
            raise ValueError(f"x_low ({self.x_low}) must be below x_high ({self.x_high})")
        if self.noise_offset < abs(self.noise_amplitude):
            raise ValueError(
                "noise_offset must be >= |noise_amplitude| so that sigma(x) is never negative "
                f"(got {self.noise_offset} and {self.noise_amplitude})"
            )
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must stay below 0.9 to leave rows for training "
                f"(got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class DataParams(_Section):
    source: Literal["synthetic", "file"] = "synthetic"
    path: str = Field("examples/diabetes.csv", min_length=1)
    features: list[str] = Field(
        ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], min_length=1)
    target: str = Field("progression", min_length=1)
    # Feature columns encoded as categories although they hold numbers (a zip code, an id);
    # text and yes/no columns are categorical anyway.
    categorical: list[str] = Field(default_factory=list)
    split_column: str | None = None
    missing: Literal["impute", "drop", "error"] = "impute"
    # A category seen in fewer training rows than this shares the "unknown" slot.
    min_category_rows: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features lists a column twice: {self.features}")
        if self.target in self.features:
            raise ValueError(f"the target '{self.target}' is also listed as a feature")
        if self.split_column is not None and self.split_column in [*self.features, self.target]:
            raise ValueError(f"split_column '{self.split_column}' is also a feature or the target")
        unknown = [name for name in self.categorical if name not in self.features]
        if unknown:
            raise ValueError(f"categorical names {', '.join(map(repr, unknown))}, which "
                             f"features does not list; features: {self.features}")
        if self.source == "file" and not self.path.lower().endswith(FILE_SUFFIXES):
            raise ValueError(f"path must name a CSV or Parquet file ({', '.join(FILE_SUFFIXES)}); "
                             f"got '{self.path}'")
        return self


class ModelParams(_Section):
    hidden_sizes: list[int] = Field([32, 32], min_length=1, max_length=16)
    activation: Literal["sigmoid", "tanh", "relu", "silu", "gelu"] = "silu"
    scale_link: Literal["softplus", "exp", "square"] = "softplus"
    sigma_floor: float = Field(1e-4, ge=0.0, le=1.0)
    standardize: bool = True
    ensemble_size: int = Field(5, ge=1, le=64)
    calibrate_sigma: bool = False
    # normal: y ~ N(mu, sigma^2); lognormal: log y ~ N(mu, sigma^2), for a positive target;
    # auto: the generate stage picks one for the table (family_choice.py).
    distribution: Literal["normal", "lognormal", "auto"] = "auto"
    # A categorical column with at most this many categories is one-hot encoded; a larger
    # one gets a learned embedding of this many dimensions.
    embedding_dim: int = Field(8, ge=1, le=256)
    # Numeric inputs that are never negative and skewed enter as log(1 + x) where a line
    # fits the target better so (preprocessing.columns_to_log).
    log_skewed: bool = True

    @model_validator(mode="after")
    def _check(self) -> ModelParams:
        if any(size < 1 or size > 4096 for size in self.hidden_sizes):
            raise ValueError(f"hidden_sizes entries must be 1..4096 (got {self.hidden_sizes})")
        return self


class TrainParams(_Section):
    seed: int = Field(0, ge=0)
    batch_size: int = Field(256, ge=1)
    max_steps_per_epoch: int = Field(32, ge=1)
    max_batch_size: int = Field(4096, ge=1)
    max_epochs: int = Field(2000, ge=1)
    max_steps: int = Field(32000, ge=1)
    patience: float = Field(0.1, gt=0.0, le=1.0)
    min_delta: float = Field(0.0, ge=0.0)
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0.0)
    gradient_clip: float | None = Field(None, gt=0.0)
    lr_schedule: Literal["constant", "cosine", "plateau"] = "cosine"
    loss: Literal["nll", "beta_nll"] = "nll"
    beta: float = Field(0.5, ge=0.0, le=1.0)


class ComputeParams(_Section):
    """Where and how Lightning trains; the defaults use one GPU when there is one."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = Field(1)
    strategy: Literal["auto", "ddp"] = "auto"
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"

    @model_validator(mode="after")
    def _check(self) -> ComputeParams:
        if isinstance(self.devices, int) and self.devices < 1:
            raise ValueError(f"devices must be >= 1 or 'auto' (got {self.devices})")
        return self


class LrFindParams(_Section):
    fixed_lr: float | None = Field(None, gt=0.0, le=10.0)
    min_lr: float = Field(1e-5, gt=0.0)
    max_lr: float = Field(1.0, gt=0.0, le=10.0)
    num_steps: int = Field(100, ge=10)
    divisor: float = Field(10.0, ge=1.0)
    lower_bound: float = Field(1e-4, gt=0.0)
    upper_bound: float = Field(5e-3, gt=0.0)
    fallback_lr: float = Field(5e-3, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> LrFindParams:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be below max_lr ({self.max_lr})")
        if self.lower_bound > self.upper_bound:
            raise ValueError(
                f"lower_bound ({self.lower_bound}) must not exceed upper_bound ({self.upper_bound})"
            )
        if not self.lower_bound <= self.fallback_lr <= self.upper_bound:
            raise ValueError(
                f"fallback_lr ({self.fallback_lr}) must lie within "
                f"[lower_bound, upper_bound] = [{self.lower_bound}, {self.upper_bound}]"
            )
        return self


class EvaluateParams(_Section):
    interval_levels: list[float] = Field([0.5, 0.8, 0.95], min_length=1)
    plot_max_points: int = Field(5000, ge=100)
    # Peer baselines fitted and scored beside the model (deepnormal.peers; the peers extra).
    peers: list[Literal["catboost", "ngboost"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        if any(not 0.0 < level < 1.0 for level in self.interval_levels):
            raise ValueError(f"interval_levels must lie strictly between 0 and 1 "
                             f"(got {self.interval_levels})")
        if len(set(self.peers)) != len(self.peers):
            raise ValueError(f"peers lists a peer twice (got {self.peers})")
        import importlib.util

        missing = [name for name in self.peers if importlib.util.find_spec(name) is None]
        if missing:  # found out here, not after the training
            raise ValueError(f"peers lists {', '.join(missing)}, not installed here: "
                             "pip install 'deepnormal[peers]' (or set peers: [])")
        return self


class TrackingParams(_Section):
    enabled: bool = True
    experiment_name: str = Field("deepnormal", min_length=1)


class SearchRange(_Section):
    """A numeric range for the tuner: low..high, sampled on a log scale with `log`."""
    low: float
    high: float
    log: bool = False


# The sections whose params the tuner may search, and the default search space.
TUNABLE = {"model": ModelParams, "train": TrainParams, "lr_find": LrFindParams}
DEFAULT_SPACE = {
    "model.hidden_sizes": [[16], [32], [32, 32], [64, 64]],
    "model.activation": ["silu", "tanh", "relu"],
    "train.weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
    "lr_find.fixed_lr": {"low": 1e-3, "high": 1e-2, "log": True},
}


class TuneParams(_Section):
    """The Optuna search of the tune stage (docs/tuning.md)."""
    enabled: bool = False
    trials: int = Field(30, ge=1)
    timeout_minutes: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    prune: bool = True
    storage: str | None = None
    study_name: str = Field("deepnormal", min_length=1)
    # param -> a list of choices, or a range {low, high, log}; checked by search_space().
    space: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_SPACE))

    @model_validator(mode="after")
    def _check(self) -> TuneParams:
        search_space(self.space)
        return self


def search_space(space: dict[str, Any]) -> dict[str, SearchRange | list]:
    """The tune stage's search space, each entry checked against the param it searches:
    the param exists in a tunable section, a range is numeric, non-empty and within what
    the param accepts, every choice is a value the param accepts."""
    if not space:
        raise ValueError("space is empty: name at least one param to search")
    checked = {}
    for key, spec in space.items():
        section, _, name = str(key).partition(".")
        model = TUNABLE.get(section)
        if model is None or name not in model.model_fields:
            known = ", ".join(f"{s}.{n}" for s, m in TUNABLE.items() for n in m.model_fields)
            raise ValueError(f"space: unknown param '{key}'; the tuner can search: {known}")
        if isinstance(spec, dict):
            checked[key] = _search_range(key, spec, model, name)
        elif isinstance(spec, list) and spec:
            for choice in spec:
                _accepts(key, model, name, choice)
            checked[key] = spec
        else:
            raise ValueError(f"space '{key}': give a non-empty list of choices or a range "
                             f"{{low, high, log}} (got {spec!r})")
    return checked


def _search_range(key: str, spec: dict, model: type[_Section], name: str) -> SearchRange:
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


def _accepts(key: str, model: type[_Section], name: str, value: object) -> None:
    """Raise, naming the search entry, unless the param accepts `value`."""
    try:
        model.model_validate(model().model_dump() | {name: value})
    except ValidationError as error:
        reason = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"space '{key}': {value!r} is not a value it accepts: {reason}") from None


class Params(_Section):
    data: DataParams
    generate: GenerateParams
    model: ModelParams
    train: TrainParams
    compute: ComputeParams
    lr_find: LrFindParams
    evaluate: EvaluateParams
    tracking: TrackingParams
    tune: TuneParams

    def with_values(self, values: dict[str, object]) -> Params:
        """These params with some `section.key` values replaced, validated as a whole."""
        raw = self.model_dump()
        for key, value in values.items():
            section, name = key.split(".")
            raw[section][name] = value
        return Params.model_validate(raw)

    def flat(self, sections: tuple[str, ...] | None = None) -> dict[str, object]:
        """Params as 'section.key' -> value, the form MLflow shows side by side."""
        return {
            f"{section}.{key}": value
            for section, values in self.model_dump().items()
            if sections is None or section in sections
            for key, value in values.items()
        }


def _describe(error: dict, raw: dict) -> str:
    path = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        section = error["loc"][0] if len(error["loc"]) > 1 else None
        model = Params.model_fields[section].annotation if section else Params
        allowed = ", ".join(model.model_fields)
        where = f"section '{section}'" if section else "params.yaml"
        return f"unknown key '{path}'; {where} accepts: {allowed}"
    if kind == "missing" and len(error["loc"]) == 1:
        return f"missing section '{path}'; params.yaml needs: {', '.join(Params.model_fields)}"
    if kind == "missing":
        return f"missing key '{path}'"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"'{path}': {message}{shown}"


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise DeepnormalError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(_describe(e, raw) for e in error.errors())
        raise DeepnormalError(f"{source}: {problems}") from None


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise DeepnormalError with one readable message."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise DeepnormalError(f"cannot read {path}: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise DeepnormalError(f"{path} is not valid YAML{where}: {problem}") from None
    return parse_params(raw, str(path))


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
