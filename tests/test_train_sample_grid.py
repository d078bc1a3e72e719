"""The training sample grid's inputs (paper Fig. 7 layout): rows neutral, widest jaw, most expressive
items; columns identities that hold along each column."""

from __future__ import annotations

import pytest
import torch

from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.train.evaluation import expression_rows, sample_grid_inputs
from agora_core.data.conditions import ConditionSampler
from test_train_fixtures import write_tiny_dataset


@pytest.fixture(scope="module")
def conditions(tmp_path_factory) -> ConditionSampler:
    data = write_tiny_dataset(tmp_path_factory.mktemp("grid") / "data", n=8, mirrored=True)
    return ConditionSampler(HeadImageDataset(data, xflip=True).index, xflip=True, seed=0)


def test_rows_are_the_widest_jaw_then_the_largest_expressions(conditions: ConditionSampler):
    jaw = conditions.flame.jaw[:8, 0]
    norms = conditions.flame.expression[:8].norm(dim=1)
    rows = expression_rows(conditions, 5).tolist()
    assert rows[0] == int(jaw.argmax())
    rest = [i for i in norms.argsort(descending=True).tolist() if i != rows[0]]
    assert rows[1:] == rest[:3]
    assert len(set(rows)) == 4 and all(r < 8 for r in rows)  # distinct, never an x-flipped copy
    assert expression_rows(conditions, 1).tolist() == []
    assert sorted(expression_rows(conditions, 12).tolist()[:8]) == list(range(8))  # then repeats


def test_grid_inputs_neutral_row_identities_along_columns(conditions: ConditionSampler):
    rows, cols = 4, 3
    grid = sample_grid_inputs(conditions, 16, rows, cols, seed=5)
    chosen = expression_rows(conditions, rows)
    flame = {k: v.reshape(rows, cols, -1) for k, v in grid.flame.as_dict().items()}
    for key in ("expression", "jaw", "eyelids", "eyes"):
        assert not flame[key][0].any(), key  # row 0 neutral
        for r in range(1, rows):  # row r: item chosen[r - 1] in every column
            assert torch.equal(flame[key][r], getattr(conditions.flame, key)[chosen[r - 1]].expand(cols, -1)), (key, r)
    assert not flame["neck"].any()
    z = grid.z.reshape(rows, cols, -1)
    for r in range(1, rows):  # identity (z, shape) holds down each column
        assert torch.equal(z[r], z[0]) and torch.equal(flame["shape"][r], flame["shape"][0])
    assert not torch.equal(z[0, 0], z[0, 1])
    assert torch.equal(grid.c, grid.c[:1].expand(rows * cols, 25))  # one (frontal) camera
    again = sample_grid_inputs(conditions, 16, rows, cols, seed=5)
    assert torch.equal(again.z, grid.z) and all(torch.equal(a, b) for a, b in zip(again.flame.as_dict().values(), grid.flame.as_dict().values()))
