"""Lightning wrapper around DeepNormalNet: loss, optimiser, lr schedule, calibration and
per-epoch logging, and each ensemble member's own best epoch.

Lightning's automatic optimisation: one step per batch (a mini-batch for every ensemble
member); the Trainer clips gradients (`gradient_clip_val`) and steps the lr schedule. Per
epoch the module logs `train_nll` (the members' mean), `val_nll` (the ensemble's predictive
Gaussian on the validation split, today's weights), `val_nll_kept` (the same for the kept
ensemble, below), all in original units, nats per point, and `lr`, and `step` = the epoch,
so that every logger (MLflow, the in-memory history) indexes the curves by epoch.

Each member keeps its own best epoch: the batched network trains as one, but after every
validation pass each member whose own validation NLL improved has its weights copied into
the kept ensemble (`KeptMembers`). Early stopping and the checkpoint follow the kept
ensemble's NLL, so training stops when every member has stalled, and a checkpoint holds the
kept weights (`on_save_checkpoint`). Members' best epochs differ by hundreds of epochs on
small tables; one shared stopping epoch left most of them over- or under-fitted.
With calibrate_sigma, each validation pass also fits the variance calibration factor
(network.calibration_factor) of the kept ensemble on the validation split, so every
checkpoint carries the factor that fits its own weights. The table encoder's plain values
(`table`) and the model's settings are hyperparameters, so the checkpoint carries the
preprocessing and the network's shape with the weights.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from deepnormal.config import ModelParams, TrainParams
from deepnormal.errors import DeepnormalError
from deepnormal.network import DeepNormalNet, calibration_factor_for, ensemble_nll_z
from deepnormal.preprocessing import TableEncoder

DIVERGENCE_ADVICE = ("the learning rate is too high: set lr_find.fixed_lr lower or lower "
                     "lr_find.upper_bound")
# The checkpoint entry listing each member's kept epoch.
MEMBER_EPOCHS_KEY = "member_best_epochs"


class KeptMembers:
    """Each ensemble member's best weights so far, by its own validation NLL, and their
    validation predictions (so the kept ensemble is scored without a second forward pass).

    Every parameter of the network is stacked along the member dimension (dim 0), so a
    member's weights are one slice of each tensor."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.weights = {name: value.detach().clone() for name, value in net.named_parameters()}
        members = net.ensemble_size
        self.nll = torch.full((members,), math.inf)
        self.epochs = [0] * members
        self.mu_z: torch.Tensor | None = None
        self.sigma_z: torch.Tensor | None = None
        self.shape: torch.Tensor | None = None  # [M, B, k] for a family with shape outputs

    def update(self, net: torch.nn.Module, epoch: int, mu_z: torch.Tensor,
               sigma_z: torch.Tensor, member_nll: torch.Tensor,
               shape: torch.Tensor | None = None) -> None:
        """Keep the members whose validation NLL ([M]) fell below their best (NaN never does)."""
        member_nll = member_nll.detach()
        self.nll = self.nll.to(member_nll.device)
        improved = member_nll < self.nll
        if self.mu_z is None:
            self.mu_z, self.sigma_z = mu_z.detach().clone(), sigma_z.detach().clone()
            self.shape = None if shape is None else shape.detach().clone()
        if not bool(improved.any()):
            return
        self.nll = torch.where(improved, member_nll, self.nll)
        self.mu_z[improved] = mu_z.detach()[improved]
        self.sigma_z[improved] = sigma_z.detach()[improved]
        if shape is not None:
            self.shape[improved] = shape.detach()[improved]
        for name, value in net.named_parameters():
            self.weights[name][improved] = value.detach()[improved]
        for member in torch.nonzero(improved).flatten().tolist():
            self.epochs[member] = epoch


class DeepNormalModule(pl.LightningModule):
    # Every hyperparameter is a number, a string, or a dict or list of them (the table
    # encoder's plain values, model and train settings as params.yaml holds them): a
    # checkpoint must load with torch.load(weights_only=True).
    def __init__(self, table: dict, model: dict, train: dict, lr: float,
                 max_epochs: int) -> None:
        super().__init__()
        # Kept in the checkpoint; the train stage logs params.yaml itself, flattened.
        self.save_hyperparameters(logger=False)
        self.settings = ModelParams.model_validate(model)
        self.fit_settings = TrainParams.model_validate(train)
        self.net = DeepNormalNet.for_table(TableEncoder.from_dict(table), self.settings)
        # The epoch's mean training NLL, accumulated on the device and logged once per
        # epoch: a per-step self.log costs about a third of a step for this small network.
        # NaNs must propagate (the default drops them), so that divergence is seen.
        self.train_nll = MeanMetric(nan_strategy="disable")
        self.kept: KeptMembers | None = None  # from the first validation pass on

    @classmethod
    def for_fit(cls, encoder: TableEncoder, model: ModelParams, train: TrainParams, lr: float,
                max_epochs: int) -> DeepNormalModule:
        """`max_epochs` is the run's length (budget.Budget), where the cosine schedule ends."""
        return cls(table=encoder.to_dict(), model=model.model_dump(), train=train.model_dump(),
                   lr=lr, max_epochs=max_epochs)

    def training_step(self, batch, batch_idx):
        numeric, codes, y_z, offset, mass = batch  # [M, B, ...]: a mini-batch per member
        mu_z, sigma_z, shape = self.net.outputs(numeric, codes)
        nll = self.net.family.nll_z(y_z, mu_z, sigma_z, shape, mass)
        # The logged NLL is in the target's own units (the offset is constant per point).
        self.train_nll.update((nll + offset).mean().detach(), nll.numel())
        if self.fit_settings.loss == "beta_nll":
            # Seitzer et al. 2022: weight each point's NLL by a stop-gradient sigma^(2*beta).
            nll = nll * sigma_z.detach() ** (2 * self.fit_settings.beta)
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
        # The whole split is one batch, on every rank, so all ranks agree on val_nll (and on
        # which members improved: they hold the same weights).
        numeric, codes, y_z, offset, mass = batch
        family = self.net.family
        mu_z, sigma_z, shape = self.net.outputs(numeric, codes)
        if self.kept is None:
            self.kept = KeptMembers(self.net)
        members = family.nll_z(y_z, mu_z, sigma_z, shape, mass) + offset
        self.kept.update(self.net, self.current_epoch, mu_z, sigma_z, members.mean(dim=1),
                         shape)
        now = ensemble_nll_z(family, y_z, mu_z, sigma_z, shape, mass) + offset
        kept = self.kept
        kept_nll = ensemble_nll_z(family, y_z, kept.mu_z, kept.sigma_z, kept.shape, mass) + offset
        self.log_dict({"val_nll": now.mean(), "val_nll_kept": kept_nll.mean()},
                      batch_size=len(now), sync_dist=True)
        self.log("step", float(self.current_epoch))
        if self.settings.calibrate_sigma:
            self.net.sigma_scale.fill_(calibration_factor_for(
                family, y_z, kept.mu_z, kept.sigma_z, kept.shape, mass))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A checkpoint holds the kept ensemble, not today's weights (the LR finder's
        # temporary checkpoint comes before any validation: nothing is kept yet).
        if self.kept is not None:
            for name, value in self.kept.weights.items():
                checkpoint["state_dict"][f"net.{name}"] = value.clone()
            checkpoint[MEMBER_EPOCHS_KEY] = list(self.kept.epochs)

    def configure_optimizers(self):
        train = self.fit_settings
        optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[train.optimizer]
        optimizer = optimizer_class(self.parameters(), lr=self.hparams.lr,
                                    weight_decay=train.weight_decay)
        if train.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=self.hparams.max_epochs)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        if train.lr_schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                                   patience=10)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "val_nll"}}
        return optimizer
