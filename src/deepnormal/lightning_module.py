"""Lightning wrapper around DeepNormalNet: loss, optimiser, lr schedule, epoch logging."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from deepnormal.config import ModelParams, TrainParams
from deepnormal.data import Split
from deepnormal.errors import DeepnormalError
from deepnormal.network import DeepNormalNet, gaussian_nll_z, standardisation

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
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        max_epochs: int = 100,
        loss: str = "nll",
        beta: float = 0.5,
        gradient_clip: float | None = None,
        feature_names: list[str] | None = None,
        target_name: str = "y",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = DeepNormalNet(input_dim, hidden_sizes, activation, sigma_floor,
                                 x_mean, x_std, y_mean, y_std, scale_link)
        self.log_y_std = math.log(y_std)

    @classmethod
    def from_params(cls, model: ModelParams, train: TrainParams, data: Split,
                    lr: float) -> DeepNormalModule:
        return cls(
            input_dim=data.features.shape[1],
            hidden_sizes=list(model.hidden_sizes),
            activation=model.activation,
            sigma_floor=model.sigma_floor,
            scale_link=model.scale_link,
            **standardisation(data.features, data.target, model.standardize),
            lr=lr,
            optimizer=train.optimizer,
            weight_decay=train.weight_decay,
            lr_schedule=train.lr_schedule,
            max_epochs=train.max_epochs,
            loss=train.loss,
            beta=train.beta,
            gradient_clip=train.gradient_clip,
            # Recorded so that `deepnormal-predict` can pick the columns from an input table.
            feature_names=list(data.feature_names),
            target_name=data.target_name,
        )

    def _nll_terms(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        mu_z, sigma_z = self.net.standardised(x)
        return gaussian_nll_z(self.net.standardise_target(y), mu_z, sigma_z), sigma_z

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:  # the LR range test: one (x, y) per step
            return self._loss(batch)
        # Training: a group of mini-batches (loaders.batch_groups), one optimiser step each.
        optimizer = self.optimizers()
        for mini_batch in batch:
            loss = self._loss(mini_batch)
            optimizer.zero_grad()
            self.manual_backward(loss)
            if self.hparams.gradient_clip is not None:
                self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip,
                                    gradient_clip_algorithm="norm")
            optimizer.step()

    def on_train_epoch_end(self) -> None:
        # Lightning steps epoch schedulers itself only under automatic optimisation.
        scheduler = self.lr_schedulers()
        if self.automatic_optimization or scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(self.trainer.callback_metrics["val_nll"])
        else:
            scheduler.step()

    def _loss(self, batch) -> torch.Tensor:
        nll, sigma_z = self._nll_terms(batch)
        mean_nll = nll.mean()
        # Collected here rather than with self.log, which costs about 2 ms per call on our
        # CPUs, more than the step itself for this small network
        # (benchmarks/loop_overhead.py). Kept on the device: no host sync per step.
        self._batch_nlls.append((mean_nll.detach(), len(batch[1])))
        if self.hparams.loss == "beta_nll":
            # Seitzer et al. 2022: weight each point's NLL by a stop-gradient sigma^(2*beta).
            return (nll * sigma_z.detach() ** (2 * self.hparams.beta)).mean()
        return mean_nll

    def on_train_epoch_start(self) -> None:
        self._batch_nlls: list[tuple[torch.Tensor, int]] = []

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets this string around every hook call, about a dozen times per
        # optimiser step, and nn.Module.__setattr__ (which looks for parameters, modules and
        # buffers) makes each of those slow (benchmarks/loop_overhead.py).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def epoch_train_nll(self) -> float:
        """The epoch's mean training NLL in original units, over every rank (a collective
        under DDP: call it on all ranks). Raises DeepnormalError when it is not finite
        (divergence)."""
        nlls = torch.stack([nll for nll, _ in self._batch_nlls]).double()
        sizes = nlls.new_tensor([size for _, size in self._batch_nlls])
        totals = torch.stack([(nlls * sizes).sum(), sizes.sum()])
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        value = float(totals[0] / totals[1]) + self.log_y_std
        if not math.isfinite(value):
            raise DeepnormalError(
                f"the training loss became non-finite at epoch {self.current_epoch} "
                f"(lr {self.optimizers().param_groups[0]['lr']:.3g}); {DIVERGENCE_ADVICE}"
            )
        return value

    def validation_step(self, batch, batch_idx):
        # Once per epoch (the whole split is one batch): self.log's cost does not matter here.
        nll, _ = self._nll_terms(batch)
        self.log("val_nll", nll.mean() + self.log_y_std, on_step=False, on_epoch=True,
                 batch_size=len(batch[1]), sync_dist=True)

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
            if not self.automatic_optimization:  # on_train_epoch_end steps it with val_nll
                return {"optimizer": optimizer, "lr_scheduler": scheduler}
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "val_nll"}}
        return optimizer
