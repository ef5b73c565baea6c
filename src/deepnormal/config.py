"""params.yaml, loaded once through one validated schema.

Every stage calls `load_params()` before doing any work, so a typo, a wrong type or an
out-of-range value stops the pipeline with one message naming the key and what it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepnormal.errors import DeepnormalError
from deepnormal.reading import TABLE_SUFFIXES, table_format
from deepnormal.search_space import DEFAULT_SPACE, SearchSpace

PARAMS_FILE = Path("params.yaml")


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


# The data keys that describe a user's table (data.source: file). With source synthetic they
# keep the shipped example's values: a changed one means a table was meant.
TABLE_KEYS = ("path", "features", "target", "categorical", "split_column")


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
        if self.source == "file" and table_format(self.path) is None:
            raise ValueError(f"path must name a CSV or Parquet file ({', '.join(TABLE_SUFFIXES)})"
                             f"; got '{self.path}'")
        changed = self.table_keys_set()
        if self.source == "synthetic" and changed:
            named = ", ".join(f"data.{key} ({getattr(self, key)})" for key in changed)
            raise ValueError(
                f"{named} {'describes' if len(changed) == 1 else 'describe'} a table, but "
                "data.source is synthetic: the toy problem, which reads no table. Set "
                "data.source: file to use the table (-S data.source=file)")
        return self

    def table_keys_set(self) -> list[str]:
        """The keys describing a table that differ from the shipped example's."""
        return [key for key in TABLE_KEYS
                if getattr(self, key) != type(self).model_fields[key].get_default(
                    call_default_factory=True)]


class ModelParams(_Section):
    hidden_sizes: list[int] = Field([32, 32], min_length=1, max_length=16)
    activation: Literal["sigmoid", "tanh", "relu", "silu", "gelu"] = "silu"
    scale_link: Literal["softplus", "exp", "square"] = "softplus"
    sigma_floor: float = Field(1e-4, ge=0.0, le=1.0)
    standardize: bool = True
    ensemble_size: int = Field(5, ge=1, le=64)
    calibrate_sigma: bool = False
    # The predictive family (family.py); auto: chosen for the table by the data
    # (family_choice.py: the generate stage, then the train stage's trial).
    distribution: Literal["normal", "lognormal", "studentt", "johnsonsu", "zerolognormal",
                          "auto"] = "auto"
    # A family's shape parameters (df; skew and tail; P(y = 0)): one per member for the whole
    # table, or a head of the network like the location and the scale (per row).
    shape: Literal["per_table", "per_row"] = "per_table"
    # A categorical column with at most this many categories is one-hot encoded; a larger
    # one gets a learned embedding of this many dimensions.
    embedding_dim: int = Field(8, ge=1, le=256)
    # Numeric inputs that are never negative and skewed enter as log(1 + x) where a line
    # fits the target better so (preprocessing.columns_to_log).
    log_skewed: bool = True
    # Each number also enters as its piecewise-linear encoding over quantile bins of the
    # training split (Gorishniy et al. 2022, rtdl_num_embeddings): plain | piecewise | auto
    # (piecewise from PIECEWISE_MIN_ROWS training rows: it cost small tables).
    numeric_encoding: Literal["auto", "plain", "piecewise"] = "auto"
    piecewise_bins: int = Field(16, ge=2, le=256)

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
    max_epochs: int = Field(4000, ge=1)
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


# The sections whose params the tuner may search (search_space.py checks tune.space by them).
TUNABLE = {"model": ModelParams, "train": TrainParams, "lr_find": LrFindParams}


class TuneParams(_Section):
    """The Optuna search of the tune stage (docs/tuning.md)."""
    enabled: bool = False
    trials: int = Field(30, ge=1)
    timeout_minutes: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    prune: bool = True
    storage: str | None = None
    study_name: str = Field("deepnormal", min_length=1)
    # param -> a list of choices, or a range {low, high, log}; checked by search_space.py.
    space: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_SPACE))

    @model_validator(mode="after")
    def _check(self) -> TuneParams:
        SearchSpace.checked(self.space, TUNABLE)
        return self


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
