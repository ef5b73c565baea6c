"""What the network gets for a table's size: the piecewise-linear encoding of the numbers
(capacity.py, the encoder's bin edges, the network's extra inputs), through the real trainer
and a weights-only checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from deepnormal.capacity import PIECEWISE_MIN_ROWS, piecewise_bins
from deepnormal.config import ModelParams, TrainParams
from deepnormal.data import NUMERIC
from deepnormal.inference import load_model
from deepnormal.network import DeepNormalNet
from deepnormal.prepared import Split
from deepnormal.preprocessing import TableEncoder
from tests.test_model import tiny_params


def kinked_split(n: int, seed: int) -> Split:
    """y bends sharply at x = 0 (a tree's split), a yes/no column, a constant column and
    empty cells in x."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=n)
    y = np.where(x > 0, 3.0, 0.0) + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame({"x": np.where(rng.uniform(size=n) < 0.05, np.nan, x),
                          "yes": (rng.uniform(size=n) < 0.5).astype(float),
                          "constant": np.full(n, 7.0)})
    return Split(frame, y, dict.fromkeys(frame.columns, NUMERIC))


def test_piecewise_encoding_is_used_from_a_table_size_under_auto():
    auto, plain = ModelParams(numeric_encoding="auto"), ModelParams(numeric_encoding="plain")
    assert piecewise_bins(auto, PIECEWISE_MIN_ROWS - 1) == 0
    assert piecewise_bins(auto, PIECEWISE_MIN_ROWS) == auto.piecewise_bins
    assert piecewise_bins(plain, 10 ** 6) == 0
    assert piecewise_bins(ModelParams(numeric_encoding="piecewise", piecewise_bins=4), 50) == 4


def test_bin_edges_are_fitted_on_training_values_and_travel_as_plain_values():
    data = kinked_split(300, 0)
    encoder = TableEncoder.fit(data, piecewise_bins=8)
    edges = {c.name: c.edges for c in encoder.numeric}
    x_values = encoder.encode(data.frame).numeric[:, encoder.value_positions[0]]
    assert len(edges["x"]) == 9 and np.all(np.diff(edges["x"]) > 0)
    assert edges["x"][0] == pytest.approx(x_values.min()) and \
        edges["x"][-1] == pytest.approx(x_values.max())
    assert edges["yes"] is None and edges["constant"] is None  # two values, one: no bins
    # x has empty cells: its "was empty" flag sits after it, so "yes" is third.
    assert encoder.value_positions == [0, 2, 3]
    again = TableEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert again == encoder
    # Without the option nothing about the encoder changes, in memory or in the checkpoint.
    plain = TableEncoder.fit(data)
    assert all(c.edges is None for c in plain.numeric)
    assert all("edges" not in c for c in plain.to_dict()["numeric"])


def test_the_network_takes_each_binned_number_encoded_beside_its_value():
    data = kinked_split(300, 0)
    encoder = TableEncoder.fit(data, piecewise_bins=8)
    settings = ModelParams(hidden_sizes=[8], ensemble_size=3)
    net = DeepNormalNet.for_table(encoder, settings)
    plain = DeepNormalNet.for_table(TableEncoder.fit(data), settings)
    assert net.body[0].weight.shape[1] == plain.body[0].weight.shape[1] + 8
    encoded = encoder.encode(data.frame)
    numeric = torch.tensor(encoded.numeric)
    codes = torch.tensor(encoded.codes)
    shared = net.inputs(numeric, codes)  # every member the same rows ...
    per_member = net.inputs(numeric.expand(3, *numeric.shape), codes.expand(3, *codes.shape))
    torch.testing.assert_close(shared, per_member)  # ... or a batch each: the same inputs
    # The encoding of x: bins below it full (1), its own partly filled, the rest empty.
    x_code = shared[0, :, numeric.shape[1]:numeric.shape[1] + 8]
    filled = (x_code > 0).sum(dim=1)
    assert torch.all((x_code[:, :-1] >= 0) & (x_code[:, :-1] <= 1))
    # Their sum grows with x: the encoding is monotone in the number.
    assert torch.all(torch.diff(x_code.sum(dim=1)[torch.argsort(numeric[:, 0])]) >= -1e-5)
    assert filled.max() == 8 and filled.min() <= 1


def test_a_piecewise_fit_on_the_real_trainer_learns_the_kink_and_reloads(tmp_path):
    from deepnormal.training import fit

    model = ModelParams(hidden_sizes=[16], ensemble_size=2, numeric_encoding="piecewise",
                        piecewise_bins=8, distribution="normal")
    params = tiny_params(model, TrainParams(max_epochs=30, patience=1.0, batch_size=64))
    train, val = kinked_split(400, 1), kinked_split(200, 2)
    result = fit(params, train, val, lr=0.01, out_dir=tmp_path)
    assert result.best_val_nll < result.history[0]["val_nll"] - 0.3
    loaded = load_model(result.checkpoint)  # weights only: edges are plain values
    assert [c.edges is not None for c in loaded.encoder.numeric] == [True, False, False]
    predicted = loaded.predict(val.frame).distribution
    assert np.isfinite(predicted.mean()).all()


def test_the_served_models_environment_installs_the_encoding():
    from deepnormal.serving import requirements

    assert any(line.startswith("rtdl_num_embeddings==") for line in requirements())
