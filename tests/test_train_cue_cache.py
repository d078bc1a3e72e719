"""The per-row dual-discrimination cue cache (`CueCache`): cached == fresh, x-flipped rows are their
own, zeros before `start_dual_kimg`, the memory-budget fallback, and training identical with it on
and off.

Equality is exact (`torch.equal`): a row's cue is a function of that row alone (the head is
evaluated row by row, the rasteriser renders each camera on its own), so nothing may differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import agora_core.train.loop as loop
from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.train.build import CueRenderer
from agora_core.inference.checkpoint import latest_checkpoint, load_checkpoint
from agora_core.data.conditions import ConditionSampler
from agora_core.train.sampling import CueCache
from test_train_fixtures import cached_build_head, tiny_config, write_tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("cue") / "data", mirrored=True)


@pytest.fixture(scope="module")
def renderer() -> CueRenderer:
    config = tiny_config()
    head = cached_build_head(config.head)
    return CueRenderer(head, AgoraGenerator(config.generator, head).samples, config)


class CountingRenderer:
    """A cue renderer that records the batch size of every render."""

    def __init__(self, render: CueRenderer):
        self.render, self.batches = render, []

    def __call__(self, flame, camera, enabled=True):
        self.batches.append(camera.shape[0])
        return self.render(flame, camera, enabled)


def _fresh(renderer: CueRenderer, conditions: ConditionSampler, rows: list[int]) -> torch.Tensor:
    c, flame = conditions.take(torch.tensor(rows))
    return renderer(flame, c)


def test_cached_cue_equals_a_fresh_render_and_flips_are_rows(data: Path, renderer: CueRenderer):
    conditions = ConditionSampler(HeadImageDataset(data, xflip=True).index, xflip=True, seed=0)
    assert len(conditions) == 16 and conditions.num_images == 8
    counting = CountingRenderer(renderer)
    cache = CueCache(counting, conditions, 16, budget_mb=1.0, device="cpu")
    assert cache.enabled and cache.table is None  # lazily allocated
    for rows in ([3, 11, 3, 0], [0, 5, 11, 12], [3, 11, 0, 5]):  # 11 is 3 flipped: another cue
        idx = torch.tensor(rows)
        c, flame = conditions.take(idx)
        assert torch.equal(cache(idx, flame, c), _fresh(renderer, conditions, rows)), rows
    assert counting.batches == [3, 2]  # each row rendered once (unique rows), the last call all cached
    assert cache.filled.sum() == 5
    assert not torch.equal(cache.table[3], cache.table[11])


def test_real_batch_rows_match_the_condition_rows(data: Path):
    dataset = HeadImageDataset(data, xflip=True)
    conditions = ConditionSampler(dataset.index, xflip=True, seed=0)
    batch = torch.utils.data.default_collate([dataset[i] for i in (2, 10, 15)])
    rows = conditions.rows_of(batch)
    assert rows.tolist() == [2, 10, 15]
    c, flame = conditions.take(rows)
    assert torch.equal(c, batch["camera"])
    for key, value in flame.as_dict().items():
        assert torch.equal(value, batch[key].float()), key


def test_cue_is_zero_before_start_dual_and_nothing_is_cached(data: Path, renderer: CueRenderer):
    conditions = ConditionSampler(HeadImageDataset(data).index, xflip=False, seed=0)
    cache = CueCache(renderer, conditions, 16, budget_mb=1.0)
    idx = torch.tensor([1, 2])
    c, flame = conditions.take(idx)
    cue = cache(idx, flame, c, enabled=False)
    assert cue.shape == (2, 3, 16, 16) and not cue.any()
    assert cache.table is None and not cache.filled.any()


@pytest.mark.parametrize("budget_mb", [0.0, 0.01])  # 8 rows × 3 × 16² × 4 B = 0.023 MiB
def test_over_budget_renders_every_call(data: Path, renderer: CueRenderer, budget_mb: float):
    conditions = ConditionSampler(HeadImageDataset(data).index, xflip=False, seed=0)
    counting = CountingRenderer(renderer)
    cache = CueCache(counting, conditions, 16, budget_mb=budget_mb)
    assert not cache.enabled and cache.megabytes == pytest.approx(8 * 3 * 16 * 16 * 4 / 2**20)
    for _ in range(2):
        idx = torch.tensor([4, 4, 7])
        c, flame = conditions.take(idx)
        assert torch.equal(cache(idx, flame, c), _fresh(renderer, conditions, [4, 4, 7]))
    assert counting.batches == [3, 3] and cache.table is None
    assert CueCache(renderer, conditions, 16, budget_mb=0.03).enabled  # just fits


def _ticks(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k.startswith("loss") or k == "r1"} for e in events if e["event"] == "tick"]


def test_training_is_identical_with_the_cache_on_and_off(data: Path, tmp_path: Path, monkeypatch):
    """6 steps with xflip, the cue on from step 1: same losses, same weights, bit for bit."""
    monkeypatch.setattr(loop, "build_head", cached_build_head)
    runs = {}
    for name, budget in (("cached", 1024.0), ("uncached", 0.0)):
        runs[name] = tmp_path / name
        loop.train(tiny_config(total_kimg=0.024, xflip=True, **{"loss.cue_cache_mb": budget}), data, runs[name],
                   progress=False)
        start = json.loads((runs[name] / "log.jsonl").read_text().splitlines()[0])
        assert start["event"] == "start" and start["cue_cache"] is (budget > 0)
    assert len(_ticks(runs["cached"])) == 6
    assert _ticks(runs["cached"]) == _ticks(runs["uncached"])
    a, b = (load_checkpoint(latest_checkpoint(runs[n])) for n in ("cached", "uncached"))
    for name in ("G", "G_ema", "D"):
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
