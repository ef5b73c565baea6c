"""The network (a deep ensemble), its Lightning wrapper, calibration and checkpoints, on the
real trainer."""


import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from deepnormal import metrics
from deepnormal.config import ModelParams, Params, TrainParams
from deepnormal.data import NUMERIC
from deepnormal.errors import DeepnormalError
from deepnormal.family import Normal
from deepnormal.inference import load_model
from deepnormal.lightning_module import KeptMembers
from deepnormal.loaders import MemberBatches
from deepnormal.network import DeepNormalNet, calibration_factor, mixture_moments
from deepnormal.prepared import Split
from deepnormal.preprocessing import TableEncoder


def split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-10, 10, size=n)
    y = 5.0 + 2.0 * x + rng.normal(size=n) * (1.0 + 0.5 * np.abs(x))
    return Split(pd.DataFrame({"x": x}), y, {"x": NUMERIC})


def identity_table(d: int) -> dict:
    """An encoder's plain values for d numeric inputs, nothing scaled."""
    numeric = [{"name": f"x{i}", "fill": 0.0, "mean": 0.0, "std": 1.0, "flag": False}
               for i in range(d)]
    return {"numeric": numeric, "categorical": [],
            "target": {"name": "y", "family": "normal", "mean": 0.0, "std": 1.0}}


def network(table: dict, hidden_sizes: list[int], activation: str, sigma_floor: float,
            scale_link: str = "softplus", ensemble_size: int = 1) -> DeepNormalNet:
    settings = ModelParams(hidden_sizes=hidden_sizes, activation=activation,
                           sigma_floor=sigma_floor, scale_link=scale_link,
                           ensemble_size=ensemble_size)
    return DeepNormalNet.for_table(TableEncoder.from_dict(table), settings)


def loc_scale(prediction) -> tuple[np.ndarray, np.ndarray]:
    return prediction.distribution.loc, prediction.distribution.scale


def no_codes(n: int) -> torch.Tensor:
    return torch.zeros(n, 0, dtype=torch.int64)


def test_standardisation_round_trip():
    data = split(500, 0)
    encoder = TableEncoder.fit(data)
    values = encoder.to_dict()
    assert all(isinstance(v, float) for spec in values["numeric"]
               for v in (spec["mean"], spec["std"], spec["fill"]))
    z = encoder.target_z(data.target)
    assert abs(float(z.mean())) < 1e-9 and abs(float(z.std()) - 1) < 1e-9
    x = encoder.encode(data.frame).numeric
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-5
    net = network(values, [4], "tanh", 1e-4)
    np.testing.assert_allclose(net.y_mean + net.y_std * z, data.target, rtol=1e-9)
    # Predictions come back in original units: sigma scales with the target's std.
    mu_z, sigma_z = (v[0] for v in net.members(torch.zeros(3, 1), no_codes(3)))
    mu, sigma = net(torch.zeros(3, 1), no_codes(3))
    y_std, y_mean = values["target"]["std"], values["target"]["mean"]
    np.testing.assert_allclose(sigma.detach(), sigma_z.detach() * y_std, rtol=1e-6)
    np.testing.assert_allclose(mu.detach(), y_mean + mu_z.detach() * y_std, rtol=1e-5)


def test_reference_architecture_is_available():
    net = network(identity_table(1), [10], "sigmoid", 0.0)
    shapes = [tuple(parameter.shape) for name, parameter in net.named_parameters()
              if name.endswith("weight")]
    assert shapes == [(1, 1, 10), (1, 10, 1), (1, 10, 1)]  # one member: Linear(1, 10), heads


def test_ensemble_members_are_independent_networks_in_one():
    members = 4
    net = network(identity_table(3), [8, 8], "silu", 1e-4, "softplus", members)
    x = torch.randn(6, 3)
    mu_z, sigma_z = net.members(x, no_codes(6))  # the same rows for every member
    assert mu_z.shape == sigma_z.shape == (members, 6)
    assert len({round(float(value), 6) for value in mu_z[:, 0]}) == members  # own init
    # Member m of the batched network computes exactly what its own weights alone would.
    m = 2
    hidden = x
    for layer in net.body:
        hidden = (hidden @ layer.weight[m] + layer.bias[m][0]
                  if hasattr(layer, "weight") else layer(hidden))
    alone = (hidden @ net.mean_head.weight[m] + net.mean_head.bias[m][0]).squeeze(-1)
    torch.testing.assert_close(mu_z[m], alone)
    # A batch per member, [M, B, d], gives [M, B] as well.
    codes = torch.zeros(members, 5, 0, dtype=torch.int64)
    assert net.members(torch.randn(members, 5, 3), codes)[0].shape == (members, 5)
    mu, sigma = net(x, no_codes(6))
    assert mu.shape == sigma.shape == (6,)


def test_each_member_draws_its_own_batches_of_every_row():
    sampler = MemberBatches(rows=10, batch_size=4, members=3, seed=0)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert [tuple(b.shape) for b in batches] == [(3, 4), (3, 4), (3, 2)]
        order = torch.cat(batches, dim=1)
        for member in order:
            assert sorted(member.tolist()) == list(range(10))  # every row, once
        assert len({tuple(member.tolist()) for member in order}) == 3  # own orders
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])  # a new shuffle each epoch
    # Two DDP ranks split every member's shuffle between them and take equal steps.
    ranks = [MemberBatches(10, 4, 3, seed=0, rank=r, world_size=2) for r in (0, 1)]
    shards = [torch.cat(list(ranked), dim=1) for ranked in ranks]
    assert [len(list(ranked)) for ranked in ranks] == [2, 2]
    for member in range(3):
        together = shards[0][member].tolist() + shards[1][member].tolist()
        assert sorted(together) == list(range(10))


def test_mixture_moments_and_nll_match_a_direct_computation():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=(5, 50)), rng.uniform(0.2, 2.0, size=(5, 50))
    mean, std = mixture_moments(torch.tensor(mu), torch.tensor(sigma))
    direct_mean = mu.mean(axis=0)
    direct_variance = (sigma**2 + mu**2).mean(axis=0) - direct_mean**2
    np.testing.assert_allclose(mean.numpy(), direct_mean, rtol=1e-12)
    np.testing.assert_allclose(std.numpy() ** 2, direct_variance, rtol=1e-10)
    y = rng.normal(size=50)
    density = scipy_stats.norm.pdf(y, mu, sigma).mean(axis=0)
    assert metrics.mixture_nll(y, Normal(mu, sigma)) == pytest.approx(
        -np.log(density).mean(), rel=1e-10)
    # One member: the mixture is that Gaussian.
    assert metrics.mixture_nll(y, Normal(mu[:1], sigma[:1])) == pytest.approx(
        metrics.nll(y, Normal(mu[0], sigma[0])), rel=1e-12)


def test_calibration_factor_recovers_a_known_scale():
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=100_000), rng.uniform(0.5, 2.0, size=100_000)
    y = mu + 2.0 * sigma * rng.normal(size=100_000)  # the predicted sigma is half the truth
    s = calibration_factor(*(torch.tensor(v) for v in (y, mu, sigma)))
    assert s == pytest.approx(2.0, rel=0.01)
    # It is the minimiser of the NLL of N(mu, (s sigma)^2).
    nll = [metrics.nll(y, Normal(mu, factor * sigma)) for factor in (0.95 * s, s, 1.05 * s)]
    assert nll[1] < nll[0] and nll[1] < nll[2]


def tiny_params(model: ModelParams, train: TrainParams) -> Params:
    return Params.model_validate({
        "data": {}, "generate": {}, "lr_find": {}, "evaluate": {}, "tracking": {}, "compute": {},
        "tune": {},
        "model": model.model_dump(), "train": train.model_dump(),
    })


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real MLflow store (SQLite) and a run in it: (client, run id)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")
    experiment = client.create_experiment("test")
    return client, client.create_run(experiment).info.run_id


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    """A tiny fit on the real trainer, logging through Lightning's MLflow logger."""
    from deepnormal.mlflow_logger import BatchedMLFlowLogger
    from deepnormal.training import fit

    client, run_id = store
    logger = BatchedMLFlowLogger(run_id=run_id, tracking_uri=client.tracking_uri)
    # Count the round trips to the store (the real client's calls, passed through).
    send = logger.experiment.log_batch
    logger.batches_sent = []
    logger.experiment.log_batch = lambda *a, **k: (logger.batches_sent.append(k), send(*a, **k))
    params = tiny_params(ModelParams(hidden_sizes=[16], ensemble_size=3, calibrate_sigma=True),
                         TrainParams(max_epochs=15, patience=1.0, batch_size=64,
                                     lr_schedule="cosine"))
    result = fit(params, split(400, 1), split(200, 2), lr=0.01,
                 out_dir=tmp_path_factory.mktemp("train"), logger=logger)
    return result, logger.batches_sent


def test_tiny_training_run_improves_validation_nll(trained):
    trained, _ = trained
    first, best = trained.history[0]["val_nll"], trained.best_val_nll
    assert best < first - 0.1
    assert trained.checkpoint.is_file()
    assert [row["epoch"] for row in trained.history] == list(range(trained.epochs_run))
    lrs = [row["lr"] for row in trained.history]
    assert lrs[0] == pytest.approx(0.01) and lrs == sorted(lrs, reverse=True)  # cosine


def test_the_mlflow_logger_holds_every_epoch_in_a_few_batches(trained, store):
    trained, batches_sent = trained
    client, run_id = store
    assert client.get_run(run_id).info.status == "FINISHED"  # Lightning finalized it
    for key in ("train_nll", "val_nll", "val_nll_kept", "lr"):
        logged = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in logged] == [row["epoch"] for row in trained.history], key
        np.testing.assert_allclose([m.value for m in logged],
                                   [row[key] for row in trained.history], rtol=1e-6)
    # train_nll, val_nll, val_nll_kept and lr of every epoch (two log_metrics calls an
    # epoch), sent to the store once, when Lightning finalized the logger (the fit is far
    # shorter than 10 s).
    assert [len(sent["metrics"]) for sent in batches_sent] == [4 * len(trained.history)]


def test_the_checkpoint_holds_each_members_best_weights(trained):
    trained, _ = trained
    val = split(200, 2)  # the fit's validation split
    model = load_model(trained.checkpoint)
    # The kept ensemble, as the checkpoint holds it, scores the recorded validation NLL.
    loc, scale = loc_scale(model.predict(val.frame, calibrated=False))
    assert metrics.nll(val.target, Normal(loc, scale)) == pytest.approx(
        trained.best_val_nll, abs=1e-4)
    assert trained.history[trained.best_epoch]["val_nll_kept"] == trained.best_val_nll
    assert len(trained.member_epochs) == 3
    assert max(trained.member_epochs) <= trained.best_epoch
    # The kept curve only falls (min_delta 0) and never trails today's weights' best.
    kept = [row["val_nll_kept"] for row in trained.history]
    running_best = np.minimum.accumulate([row["val_nll"] for row in trained.history])
    assert all(k <= best + 1e-4 for k, best in zip(kept, running_best, strict=True))


def test_kept_members_take_only_the_members_that_improved():
    net = network(identity_table(1), [4], "silu", 1e-4, ensemble_size=2)
    kept = KeptMembers(net)
    mu, sigma = torch.zeros(2, 3), torch.ones(2, 3)
    kept.update(net, 0, mu, sigma, torch.tensor([1.0, 2.0]))
    first = {name: value.clone() for name, value in net.named_parameters()}
    with torch.no_grad():
        for value in net.parameters():
            value.add_(1.0)
    kept.update(net, 1, mu + 1, sigma, torch.tensor([0.5, float("nan")]))
    assert kept.epochs == [1, 0]
    torch.testing.assert_close(kept.nll, torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(kept.mu_z, torch.stack([torch.ones(3), torch.zeros(3)]))
    for name, value in net.named_parameters():
        torch.testing.assert_close(kept.weights[name][0], value.detach()[0])  # improved
        torch.testing.assert_close(kept.weights[name][1], first[name][1])  # NaN: kept


def test_checkpoint_reload_predicts_identically_under_weights_only(trained):
    trained, _ = trained
    from deepnormal.lightning_module import DeepNormalModule

    # Lightning's own loader and the weights-only rebuild agree exactly.
    module = DeepNormalModule.load_from_checkpoint(trained.checkpoint, map_location="cpu",
                                                   weights_only=True)
    module.eval()
    model = load_model(trained.checkpoint)
    frame = pd.DataFrame({"x": np.linspace(-10, 10, 50)})
    encoded = model.encode(frame)
    with torch.no_grad():
        mu_ref, sigma_ref = module.net(torch.as_tensor(encoded.numeric),
                                       torch.as_tensor(encoded.codes))
    mu, sigma = loc_scale(model.predict(frame))
    np.testing.assert_array_equal(mu, mu_ref.double().numpy())
    np.testing.assert_array_equal(sigma, sigma_ref.double().numpy())
    assert np.all(sigma > 0)
    # The ensemble, its calibration factor and the table encoder came back with the weights.
    assert model.ensemble_size == 3
    assert model.sigma_scale == pytest.approx(trained.sigma_scale) != 1.0
    assert model.encoder == trained.encoder
    _, raw_sigma = loc_scale(model.predict(frame, calibrated=False))
    np.testing.assert_allclose(sigma, raw_sigma * trained.sigma_scale, rtol=1e-6)


def test_the_checkpoints_sigma_scale_fits_its_own_validation_predictions(trained):
    trained, _ = trained
    model = load_model(trained.checkpoint)
    val = split(200, 2)
    mu, sigma = loc_scale(model.predict(val.frame, calibrated=False))
    s = calibration_factor(*(torch.tensor(v) for v in (val.target, mu, sigma)))
    assert s == pytest.approx(trained.sigma_scale, rel=1e-4)
    calibrated = model.predict(val.frame).distribution
    assert metrics.nll(val.target, calibrated) <= metrics.nll(val.target, Normal(mu, sigma))


class _Payload:
    def __reduce__(self):
        return (print, ("payload executed",))


def test_checkpoint_with_a_pickled_object_is_refused(trained, tmp_path, capsys):
    trained, _ = trained
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = _Payload()
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(DeepnormalError, match="cannot be loaded safely"):
        load_model(tampered)
    assert "payload executed" not in capsys.readouterr().out


def test_truncated_checkpoint_is_refused(trained, tmp_path):
    trained, _ = trained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(trained.checkpoint.read_bytes()[:200])
    with pytest.raises(DeepnormalError, match="broken.ckpt"):
        load_model(broken)


def test_the_same_fit_writes_the_same_checkpoint_bytes(trained, tmp_path):
    """DVC hashes the checkpoint: a rerun of the same configuration on the same machine must
    not look like a new model, and the file must not carry the trainer's directories."""
    from deepnormal.training import fit

    trained, _ = trained
    params = tiny_params(ModelParams(hidden_sizes=[16], ensemble_size=3, calibrate_sigma=True),
                         TrainParams(max_epochs=15, patience=1.0, batch_size=64,
                                     lr_schedule="cosine"))
    again = fit(params, split(400, 1), split(200, 2), lr=0.01, out_dir=tmp_path / "again",
                progress=False)
    assert again.checkpoint.read_bytes() == trained.checkpoint.read_bytes()
    for directory in (tmp_path, trained.checkpoint.parent):
        assert str(directory).encode() not in again.checkpoint.read_bytes()
