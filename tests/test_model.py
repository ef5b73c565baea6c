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
    params = tiny_params(ModelParams(hidden_sizes=[16]),
                         TrainParams(max_epochs=15, patience=15, batch_size=64,
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
    for key in ("train_nll", "val_nll", "lr"):
        logged = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in logged] == [row["epoch"] for row in trained.history], key
        np.testing.assert_allclose([m.value for m in logged],
                                   [row[key] for row in trained.history], rtol=1e-6)
    # train_nll, val_nll and lr of every epoch (two log_metrics calls an epoch), sent to the
    # store once, when Lightning finalized the logger (the fit is far shorter than 10 s).
    assert [len(sent["metrics"]) for sent in batches_sent] == [3 * len(trained.history)]


def test_checkpoint_reload_predicts_identically_under_weights_only(trained):
    trained, _ = trained
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
    trained, _ = trained
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = _Payload()
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(DeepnormalError, match="cannot be loaded safely"):
        load_checkpoint(tampered)
    assert "payload executed" not in capsys.readouterr().out


def test_truncated_checkpoint_is_refused(trained, tmp_path):
    trained, _ = trained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(trained.checkpoint.read_bytes()[:200])
    with pytest.raises(DeepnormalError, match="broken.ckpt"):
        load_checkpoint(broken)
