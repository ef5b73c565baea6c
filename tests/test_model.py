"""The network, its Lightning wrapper and checkpoints, on the real trainer."""


import numpy as np
import pytest
import torch

from deepnormal.config import ModelParams, Params, TrainParams
from deepnormal.data import Split
from deepnormal.errors import DeepnormalError
from deepnormal.network import DeepNormalNet, load_checkpoint, standardisation


def split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-10, 10, size=n)
    y = 5.0 + 2.0 * x + rng.normal(size=n) * (1.0 + 0.5 * np.abs(x))
    return Split(x[:, None], y, ("x",))


def test_standardisation_round_trip():
    data = split(500, 0)
    stats = standardisation(data.features, data.target, enabled=True)
    assert all(isinstance(v, float) for v in stats["x_mean"] + stats["x_std"])
    net = DeepNormalNet(1, [4], "tanh", 1e-4, **stats)
    y = torch.as_tensor(data.target, dtype=torch.float32)
    z = net.standardise_target(y)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std(unbiased=False)) - 1) < 1e-4
    np.testing.assert_allclose(net.y_mean + net.y_std * z.numpy(), data.target, rtol=1e-5,
                               atol=1e-4)
    # Predictions come back in original units: sigma scales with y_std.
    mu_z, sigma_z = net.standardised(torch.zeros(3, 1))
    mu, sigma = net(torch.zeros(3, 1))
    np.testing.assert_allclose(sigma.detach(), sigma_z.detach() * stats["y_std"], rtol=1e-6)
    np.testing.assert_allclose(mu.detach(), stats["y_mean"] + mu_z.detach() * stats["y_std"],
                               rtol=1e-5)


def test_reference_architecture_is_available():
    net = DeepNormalNet(1, [10], "sigmoid", 0.0, [0.0], [1.0], 0.0, 1.0)
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(1, 10), (10, 1), (10, 1)]


def tiny_params(model: ModelParams, train: TrainParams) -> Params:
    return Params.model_validate({
        "data": {}, "generate": {}, "lr_find": {}, "evaluate": {}, "tracking": {}, "compute": {},
        "model": model.model_dump(), "train": train.model_dump(),
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from deepnormal.training import fit

    out = tmp_path_factory.mktemp("train")
    params = tiny_params(ModelParams(hidden_sizes=[16]),
                         TrainParams(max_epochs=15, patience=15, batch_size=64,
                                     lr_schedule="constant"))
    result = fit(params, split(400, 1), split(200, 2), lr=0.01, out_dir=out)
    return result


def test_tiny_training_run_improves_validation_nll(trained):
    first, best = trained.history[0]["val_nll"], trained.best_val_nll
    assert best < first - 0.1
    assert trained.checkpoint.is_file()
    assert [row["epoch"] for row in trained.history] == list(range(trained.epochs_run))


def test_checkpoint_reload_predicts_identically_under_weights_only(trained):
    from deepnormal.lightning_module import DeepNormalModule

    # Lightning's own loader and the weights-only rebuild agree exactly.
    module = DeepNormalModule.load_from_checkpoint(trained.checkpoint, map_location="cpu",
                                                   weights_only=True)
    module.eval()
    net = load_checkpoint(trained.checkpoint)
    x = np.linspace(-10, 10, 50)[:, None]
    with torch.no_grad():
        mu_ref, sigma_ref = module.net(torch.as_tensor(x, dtype=torch.float32))
    mu, sigma = net.predict(x)
    np.testing.assert_array_equal(mu, mu_ref.double().numpy())
    np.testing.assert_array_equal(sigma, sigma_ref.double().numpy())
    assert np.all(sigma > 0)


class _Payload:
    def __reduce__(self):
        return (print, ("payload executed",))


def test_checkpoint_with_a_pickled_object_is_refused(trained, tmp_path, capsys):
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = _Payload()
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(DeepnormalError, match="cannot be loaded safely"):
        load_checkpoint(tampered)
    assert "payload executed" not in capsys.readouterr().out


def test_truncated_checkpoint_is_refused(trained, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(trained.checkpoint.read_bytes()[:200])
    with pytest.raises(DeepnormalError, match="broken.ckpt"):
        load_checkpoint(broken)


def test_divergence_stops_with_a_clear_message(tmp_path):
    from deepnormal.training import fit

    params = tiny_params(ModelParams(hidden_sizes=[16], standardize=False, sigma_floor=0.0),
                         TrainParams(max_epochs=5, lr_schedule="constant"))
    big = split(300, 3)
    big = Split(big.features * 1e6, big.target * 1e6, big.feature_names)
    with pytest.raises(DeepnormalError, match="non-finite.*learning rate is too high"):
        fit(params, big, split(100, 4), lr=1e30, out_dir=tmp_path)


@pytest.mark.parametrize("train, lr", [
    (TrainParams(lr_schedule="cosine", gradient_clip=0.05, max_epochs=4), 0.01),
    # An lr too small to improve anything: the plateau schedule halves it after 11 epochs.
    (TrainParams(lr_schedule="plateau", loss="beta_nll", max_epochs=13), 1e-12),
], ids=["cosine-clipped", "plateau-beta-nll"])
def test_grouped_steps_train_exactly_like_lightnings_automatic_optimisation(tmp_path, train, lr):
    """fit() takes several optimiser steps per Lightning step (loaders.batch_groups), so the
    module steps, clips and schedules itself: it must match Lightning doing all of that
    with one mini-batch per step."""
    import pytorch_lightning as pl

    from deepnormal.lightning_module import DeepNormalModule
    from deepnormal.loaders import batches
    from deepnormal.training import EpochHistory, fit

    train = train.model_copy(update={"batch_size": 16, "patience": 100})
    params = tiny_params(ModelParams(hidden_sizes=[8]), train)
    data, val = split(200, 5), split(60, 6)  # 13 mini-batches: groups of 8 and 5
    grouped = fit(params, data, val, lr, tmp_path / "grouped").history

    pl.seed_everything(train.seed, verbose=False)
    module = DeepNormalModule.from_params(params.model, train, data, lr)
    automatic = EpochHistory()
    pl.Trainer(max_epochs=train.max_epochs, gradient_clip_val=train.gradient_clip,
               callbacks=[automatic], accelerator="cpu", logger=False,
               enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0,
               default_root_dir=tmp_path / "automatic").fit(
        module, batches(data, train.batch_size, shuffle=True, seed=train.seed),
        batches(val, len(val), shuffle=False))

    assert len(grouped) == len(automatic.rows) == train.max_epochs
    for ours, lightning in zip(grouped, automatic.rows, strict=True):
        assert ours == pytest.approx(lightning, rel=1e-5, abs=1e-12)
    lrs = [row["lr"] for row in grouped]
    if train.lr_schedule == "plateau":
        assert lrs[-1] == pytest.approx(lr / 2)
    else:
        assert lrs[1] < lrs[0]
