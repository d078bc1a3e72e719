"""`Monitor`: log.jsonl events and TensorBoard scalars (tensorboard is a dependency)."""

from __future__ import annotations

import json

import pytest

from agora_core.train.monitor import Monitor


def test_ticks_and_events_reach_log_jsonl_and_tensorboard(tmp_path):
    monitor = Monitor(tmp_path, total_kimg=0.1, progress=False)
    for loss in (1.0, 3.0):
        monitor.accumulate({"loss_G": loss, "loss_D": 2 * loss})
    record = monitor.tick(64, step=2)
    monitor.event("swd", 64, step=2, swd=12.5)
    monitor.close()

    assert record["loss_G"] == pytest.approx(2.0) and record["loss_D"] == pytest.approx(4.0)  # means
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in lines] == ["tick", "swd"] and lines[1]["kimg"] == pytest.approx(0.064)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "tick/loss_G" in events.Tags()["scalars"] and "swd/swd" in events.Tags()["scalars"]
    assert "tick/step" not in events.Tags()["scalars"]  # the step is the x axis's companion, not a curve
    (point,) = events.Scalars("swd/swd")
    assert point.step == 64 and point.value == pytest.approx(12.5)  # x axis: images shown
    (point,) = events.Scalars("tick/loss_G")
    assert point.value == pytest.approx(2.0)


def test_a_disabled_monitor_writes_nothing(tmp_path):
    monitor = Monitor(tmp_path / "run", total_kimg=1.0, enabled=False, progress=False)
    monitor.accumulate({"loss_G": 1.0})
    monitor.event("swd", 0, swd=1.0)
    monitor.close()
    assert not (tmp_path / "run").exists()
