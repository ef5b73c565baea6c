"""Lightning wrapper around DeepNormalNet: loss, optimiser, lr schedule, calibration and
per-epoch logging.

Lightning's automatic optimisation: one step per batch (a mini-batch for every ensemble
member); the Trainer clips gradients (`gradient_clip_val`) and steps the lr schedule. Per
epoch the module logs `train_nll` (the members' mean), `val_nll` (the ensemble's predictive
Gaussian on the validation split), both in original units, nats per point, and `lr`, and
`step` = the epoch, so that every logger (MLflow, the in-memory history) indexes the curves
by epoch. With calibrate_sigma, each validation pass also fits the variance calibration
factor (network.calibration_factor) on the validation split, so every checkpoint carries
the factor that fits its own weights. The table encoder's plain values (`table`) are a
hyperparameter, so the checkpoint carries the preprocessing with the weights.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from deepnormal.config import ModelParams, TrainParams
from deepnormal.errors import DeepnormalError
from deepnormal.network import DeepNormalNet, calibration_factor, gaussian_nll_z, mixture_moments

DIVERGENCE_ADVICE = ("the learning rate is too high: set lr_find.fixed_lr lower or lower "
                     "lr_find.upper_bound")


class DeepNormalModule(pl.LightningModule):
    # Every hyperparameter is a number, a string or a list of numbers: a checkpoint must
    # load with torch.load(weights_only=True).
    def __init__(
        self,
        table: dict,
        hidden_sizes: list[int],
        activation: str,
        sigma_floor: float,
        scale_link: str = "softplus",
        ensemble_size: int = 1,
        embedding_dim: int = 8,
        calibrate_sigma: bool = False,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        max_epochs: int = 100,
        loss: str = "nll",
        beta: float = 0.5,
    ) -> None:
        super().__init__()
        # Kept in the checkpoint; the train stage logs params.yaml itself, flattened.
        self.save_hyperparameters(logger=False)
        self.net = DeepNormalNet(table, hidden_sizes, activation, sigma_floor, scale_link,
                                 ensemble_size, embedding_dim)
        # The epoch's mean training NLL, accumulated on the device and logged once per
        # epoch: a per-step self.log costs about a third of a step for this small network.
        # NaNs must propagate (the default drops them), so that divergence is seen.
        self.train_nll = MeanMetric(nan_strategy="disable")

    @classmethod
    def from_params(cls, model: ModelParams, train: TrainParams, table: dict, lr: float,
                    max_epochs: int) -> DeepNormalModule:
        """`max_epochs` is the run's length (budget.Budget), where the cosine schedule ends."""
        return cls(
            table=table,
            hidden_sizes=list(model.hidden_sizes),
            activation=model.activation,
            sigma_floor=model.sigma_floor,
            scale_link=model.scale_link,
            ensemble_size=model.ensemble_size,
            embedding_dim=model.embedding_dim,
            calibrate_sigma=model.calibrate_sigma,
            lr=lr,
            optimizer=train.optimizer,
            weight_decay=train.weight_decay,
            lr_schedule=train.lr_schedule,
            max_epochs=max_epochs,
            loss=train.loss,
            beta=train.beta,
        )

    def training_step(self, batch, batch_idx):
        numeric, codes, y_z, offset = batch  # [M, B, ...]: a mini-batch per member
        mu_z, sigma_z = self.net.members(numeric, codes)
        nll = gaussian_nll_z(y_z, mu_z, sigma_z)
        # The logged NLL is in the target's own units (the offset is constant per point).
        self.train_nll.update((nll + offset).mean().detach(), nll.numel())
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
        value = float(self.train_nll.compute())
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
        numeric, codes, y_z, offset = batch
        mu_z, sigma_z = mixture_moments(*self.net.members(numeric, codes))
        nll = gaussian_nll_z(y_z, mu_z, sigma_z) + offset
        self.log("val_nll", nll.mean(), batch_size=len(nll), sync_dist=True)
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
