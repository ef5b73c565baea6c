import sys

import numpy as np
import pandas as pd
import pytest

from deepnormal import synthetic
from deepnormal.config import GenerateParams
from deepnormal.data import split_indices
from deepnormal.errors import DeepnormalError
from deepnormal.prepared import read_split
from tests.conftest import REPO, copy_repo, edit_params, run


def test_sample_follows_the_generating_formula():
    p = GenerateParams(n=200_000, seed=3)
    x, y = synthetic.sample(p)
    assert x.shape == y.shape == (p.n,)
    assert x.min() >= p.x_low and x.max() <= p.x_high
    expected_mu = -0.5 + 1.3 * x + 3.0 * np.cos(0.5 * x)
    expected_sigma = np.sin(0.4 * x) + 1.0
    np.testing.assert_allclose(synthetic.true_mean(x, p), expected_mu)
    np.testing.assert_allclose(synthetic.true_sigma(x, p), expected_sigma)
    keep = expected_sigma > 0.05
    z = (y - expected_mu)[keep] / expected_sigma[keep]
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01


def test_sample_is_deterministic_per_seed():
    a = synthetic.sample(GenerateParams(seed=1))
    b = synthetic.sample(GenerateParams(seed=1))
    c = synthetic.sample(GenerateParams(seed=2))
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_is_a_partition_with_the_requested_sizes():
    parts = split_indices(2000, 0.25, 0.25, seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [1000, 500, 500]
    assert sorted(np.concatenate(list(parts.values()))) == list(range(2000))


def test_generate_stage_writes_byte_identical_files(tmp_path):
    root = copy_repo(tmp_path)
    edit_params(root, {"generate": {"n": 300}})
    outputs = []
    for _ in range(2):
        run([sys.executable, "stages/generate.py"], root)
        outputs.append({name: (root / "data/prepared" / f"{name}.parquet").read_bytes()
                        for name in ("train", "val", "test")})
    assert outputs[0] == outputs[1]
    frames = {name: pd.read_parquet(root / "data/prepared" / f"{name}.parquet")
              for name in outputs[0]}
    assert [len(frames[k]) for k in ("train", "val", "test")] == [180, 45, 75]
    assert list(frames["train"].columns) == ["x", "y"]


def test_generate_help_runs_without_params(tmp_path):
    result = run([sys.executable, str(REPO / "stages/generate.py"), "--help"], tmp_path)
    assert "byte-identical" in result.stdout


@pytest.mark.parametrize("content, message", [
    (None, "does not exist; run the stage that writes it"),
    (b"", "is not a readable Parquet file"),
    (b"PAR1 not really", "is not a readable Parquet file"),
    ({"x": [], "y": []}, "has columns but no rows"),
    ({"x": [1.0, 3.0], "y": [2.0, np.nan]}, "column 'y'.*first at data row 2"),
    ({"x": ["1.0", "abc"], "y": [2.0, 1.0]}, "column 'x'.*'abc'"),
    ({"x": [1.0], "y": [np.inf]}, "column 'y'"),
    ({"x": [1.0]}, "must have feature columns and a target column"),
])
def test_bad_split_files_are_refused_by_name(tmp_path, content, message):
    path = tmp_path / "train.parquet"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        pd.DataFrame(content).to_parquet(path)
    with pytest.raises(DeepnormalError, match=message) as caught:
        read_split(path)
    assert "train.parquet" in str(caught.value)
