"""Lightning wrapper around DeepNormalNet: loss, optimiser, lr schedule, calibration and
per-epoch logging.

Lightning's automatic optimisation: one step per batch (a mini-batch for every ensemble
member); the Trainer clips gradients (`gradient_clip_val`) and steps the lr schedule. Per
epoch the module logs `train_nll` (the members' mean), `val_nll` (the ensemble's predictive
Gaussian on the validation split), both in original units, nats per point, and `lr`, and
`step` = the epoch, so that every logger (MLflow, the in-memory history) indexes the curves
by epoch. With calibrate_sigma, each validation pass also fits the variance calibration
factor (network.calibration_factor) on the validation split, so every checkpoint carries
the factor that fits its own weights.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from deepnormal.config import ModelParams, TrainParams
from deepnormal.data import Split
from deepnormal.errors import DeepnormalError
from deepnormal.network import (
    DeepNormalNet,
    calibration_factor,
    gaussian_nll_z,
    mixture_moments,
    standardisation,
)

DIVERGENCE_ADVICE = ("the learning rate is too high: set lr_find.fixed_lr lower or lower "
                     "lr_find.upper_bound")


class DeepNormalModule(pl.LightningModule):
    # Every hyperparameter is a number, a string or a list of numbers: a checkpoint must
    # load with torch.load(weights_only=True).
    def __init__(
        self,
        input_dim: int,
        hidden_sizes: list[int],
        activation: str,
        sigma_floor: float,
        x_mean: list[float],
        x_std: list[float],
        y_mean: float,
        y_std: float,
        scale_link: str = "softplus",
        ensemble_size: int = 1,
        calibrate_sigma: bool = False,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        max_epochs: int = 100,
        loss: str = "nll",
        beta: float = 0.5,
        feature_names: list[str] | None = None,
        target_name: str = "y",
    ) -> None:
        super().__init__()
        # Kept in the checkpoint; the train stage logs params.yaml itself, flattened.
        self.save_hyperparameters(logger=False)
        self.net = DeepNormalNet(input_dim, hidden_sizes, activation, sigma_floor,
                                 x_mean, x_std, y_mean, y_std, scale_link, ensemble_size)
        self.log_y_std = math.log(y_std)
        # The epoch's mean training NLL, accumulated on the device and logged once per
        # epoch: a per-step self.log costs about a third of a step for this small network.
        # NaNs must propagate (the default drops them), so that divergence is seen.
        self.train_nll = MeanMetric(nan_strategy="disable")

    @classmethod
    def from_params(cls, model: ModelParams, train: TrainParams, data: Split,
                    lr: float) -> DeepNormalModule:
        return cls(
            input_dim=data.features.shape[1],
            hidden_sizes=list(model.hidden_sizes),
            activation=model.activation,
            sigma_floor=model.sigma_floor,
            scale_link=model.scale_link,
            ensemble_size=model.ensemble_size,
            calibrate_sigma=model.calibrate_sigma,
            **standardisation(data.features, data.target, model.standardize),
            lr=lr,
            optimizer=train.optimizer,
            weight_decay=train.weight_decay,
            lr_schedule=train.lr_schedule,
            max_epochs=train.max_epochs,
            loss=train.loss,
            beta=train.beta,
            # Recorded so that `deepnormal-predict` can pick the columns from an input table.
            feature_names=list(data.feature_names),
            target_name=data.target_name,
        )

    def training_step(self, batch, batch_idx):
        x, y = batch  # [M, B, d], [M, B]: a mini-batch per member
        mu_z, sigma_z = self.net.members(x)
        nll = gaussian_nll_z(self.net.standardise_target(y), mu_z, sigma_z)
        self.train_nll.update(nll.mean().detach(), nll.numel())
        if self.hparams.loss == "beta_nll":
            # Seitzer et al. 2022: weight each point's NLL by a stop-gradient sigma^(2*beta).
            nll = nll * sigma_z.detach() ** (2 * self.hparams.beta)
        # The members' mean loss: their parameters are disjoint, and Adam's updates do not
        # depend on the loss's scale, so each member trains as it would alone.
        return nll.mean()

    def on_train_epoch_start(self) -> None:
        # The lr this epoch trains with: an epoch schedule steps before on_train_epoch_end.
        self.epoch_lr = self.optimizers().param_groups[0]["lr"]

    def on_train_epoch_end(self) -> None:
        # compute() averages over every rank under DDP.
        value = float(self.train_nll.compute()) + self.log_y_std
        self.train_nll.reset()
        lr = self.epoch_lr
        if not math.isfinite(value):
            raise DeepnormalError(
                f"the training loss became non-finite at epoch {self.current_epoch} "
                f"(lr {lr:.3g}); {DIVERGENCE_ADVICE}"
            )
        self.log_dict({"train_nll": value, "lr": lr, "step": float(self.current_epoch)},
                      sync_dist=True)

    def validation_step(self, batch, batch_idx):
        # The whole split is one batch, on every rank, so all ranks agree on val_nll.
        x, y = batch
        y_z = self.net.standardise_target(y)
        mu_z, sigma_z = mixture_moments(*self.net.members(x))
        nll = gaussian_nll_z(y_z, mu_z, sigma_z)
        self.log("val_nll", nll.mean() + self.log_y_std, batch_size=len(nll), sync_dist=True)
        self.log("step", float(self.current_epoch))
        if self.hparams.calibrate_sigma:
            self.net.sigma_scale.fill_(calibration_factor(y_z, mu_z, sigma_z))

    def configure_optimizers(self):
        hp = self.hparams
        optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[hp.optimizer]
        optimizer = optimizer_class(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.max_epochs)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        if hp.lr_schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                                   patience=10)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "val_nll"}}
        return optimizer
