"""antimatter15 .splat: byte layout, round trip within the uint8 quantisation, order, bad files.

Tolerances come from the format: positions are float32 (exact); scales are stored as exp(log s) in
float32 and logged back (≤ 2 float32 ulp of the log: 1e-6); colour and alpha are rounded to
1/255 (error ≤ 0.5/255 in RGB, i.e. ≤ 0.5/255/C0 in the DC coefficient); quaternion components are
rounded to 1/128 (≤ 0.5/128 each, 1/128 where a component ≈ 1 clips at 255/128 − 1), so after
renormalising, 1 − |<q, q'>| ≤ |error|²/2 ≈ 5e-5 < 1e-4.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from agora_core.gaussians import (
    SH_C0,
    GaussianSet,
    eval_sh,
    normalize_quat,
    read_splat,
    rgb_to_sh0,
    sh0_to_rgb,
    splat_importance,
    write_splat,
)
from agora_core.gaussians.io_splat import SPLAT_DTYPE

EPS = 1e-6  # float32 arithmetic on top of the quantisation steps


def random_set(b: int = 1, n: int = 100, k: int = 1) -> GaussianSet:
    rgb = torch.rand(b, n, 3)
    sh = torch.cat([rgb_to_sh0(rgb), torch.randn(b, n, k - 1, 3) * 0.1], dim=2)
    return GaussianSet(
        means=torch.randn(b, n, 3),
        log_scales=torch.randn(b, n, 3) - 4,
        quats=normalize_quat(torch.randn(b, n, 4)),
        sh=sh,
        opacities=torch.rand(b, n),
    )


def test_record_layout_is_32_little_endian_bytes(tmp_path):
    g = GaussianSet(
        means=torch.tensor([[[1.0, -2.0, 3.5]]]),
        log_scales=torch.log(torch.tensor([[[0.01, 0.02, 0.04]]])),
        quats=torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]),
        sh=rgb_to_sh0(torch.tensor([[[1.0, 0.0, 0.5]]])),
        opacities=torch.tensor([[0.5]]),
    )
    data = write_splat(tmp_path / "one.splat", g).read_bytes()
    assert SPLAT_DTYPE.itemsize == 32 and len(data) == 32
    values = struct.unpack("<3f3f4B4B", data)
    assert values[:3] == (1.0, -2.0, 3.5)
    np.testing.assert_allclose(values[3:6], [0.01, 0.02, 0.04], rtol=1e-6)
    assert values[6:10] == (255, 0, 128, 128)  # 0.5 · 255 = 127.5 rounds half to even → 128
    assert values[10:] == (255, 128, 128, 128)  # identity, w first; w = 1 clips at 255


def test_round_trip_within_quantisation(tmp_path):
    g = random_set(n=500)
    back = read_splat(write_splat(tmp_path / "g.splat", g))
    assert torch.equal(back.means, g.means)
    torch.testing.assert_close(back.log_scales, g.log_scales, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(sh0_to_rgb(back.sh), sh0_to_rgb(g.sh), rtol=0.0, atol=0.5 / 255 + EPS)
    torch.testing.assert_close(back.sh, g.sh, rtol=0.0, atol=0.5 / 255 / SH_C0 + 1e-5)
    torch.testing.assert_close(back.opacities, g.opacities, rtol=0.0, atol=0.5 / 255 + EPS)
    alignment = (back.quats * g.quats).sum(-1).abs()
    assert (1 - alignment).max() < 1e-4
    assert back.sh_degree == 0


def test_out_of_gamut_colour_is_clipped(tmp_path):
    g = random_set(n=2)
    g.sh = rgb_to_sh0(torch.tensor([[[1.7, -0.3, 0.5], [0.2, 0.2, 0.2]]]))
    rgb = sh0_to_rgb(read_splat(write_splat(tmp_path / "c.splat", g)).sh)
    torch.testing.assert_close(rgb[0, 0], torch.tensor([1.0, 0.0, 128 / 255]), rtol=0.0, atol=EPS)


def test_default_keeps_model_order_and_sorting_is_by_importance(tmp_path):
    g = random_set(n=50)
    kept = read_splat(write_splat(tmp_path / "a.splat", g))
    assert torch.equal(kept.means, g.means)
    ranked = read_splat(write_splat(tmp_path / "b.splat", g, sort_by_importance=True))
    order = torch.argsort(splat_importance(g)[0], descending=True, stable=True)
    assert torch.equal(ranked.means[0], g.means[0, order])
    importance = g.scales()[0].prod(-1) * g.opacities[0]  # the definition, spelled out
    assert torch.all(importance[order][:-1] >= importance[order][1:])


def test_degree_1_colour_is_evaluated_from_the_camera_position(tmp_path):
    g = random_set(n=40, k=4)
    camera = torch.tensor([0.0, 0.0, 3.0])
    back = read_splat(write_splat(tmp_path / "v.splat", g, camera_position=camera))
    dirs = torch.nn.functional.normalize(g.means - camera, dim=-1)
    expected = eval_sh(g.sh, dirs).clamp(0, 1)
    torch.testing.assert_close(sh0_to_rgb(back.sh), expected, rtol=0.0, atol=0.5 / 255 + EPS)
    dc_only = read_splat(write_splat(tmp_path / "dc.splat", g))
    torch.testing.assert_close(sh0_to_rgb(dc_only.sh), sh0_to_rgb(g.sh).clamp(0, 1), rtol=0.0, atol=0.5 / 255 + EPS)


def test_batch_index(tmp_path):
    g = random_set(b=2)
    back = read_splat(write_splat(tmp_path / "g.splat", g, batch_index=1))
    assert torch.equal(back.means, g.means[1:])
    with pytest.raises(ValueError, match="batch_index"):
        write_splat(tmp_path / "h.splat", g)


# --- bad files -------------------------------------------------------------------------------------


def expect_error(path, *words):
    with pytest.raises(AgoraError) as info:
        read_splat(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message


def test_missing_and_empty_files(tmp_path):
    expect_error(tmp_path / "nope.splat", "no such file")
    (tmp_path / "empty.splat").write_bytes(b"")
    expect_error(tmp_path / "empty.splat", "is empty")


def test_truncated_file(tmp_path):
    path = write_splat(tmp_path / "t.splat", random_set(n=10))
    path.write_bytes(path.read_bytes()[:-5])
    expect_error(path, "315 bytes is not a multiple of 32")


def test_garbage_with_non_finite_positions_or_bad_scales(tmp_path):
    records = np.zeros(2, dtype=SPLAT_DTYPE)
    records["scale"] = 0.01
    records["position"][1, 0] = np.nan
    (tmp_path / "nan.splat").write_bytes(records.tobytes())
    expect_error(tmp_path / "nan.splat", "non-finite positions")
    records["position"][1, 0] = 0.0
    records["scale"][0, 2] = -1.0
    (tmp_path / "neg.splat").write_bytes(records.tobytes())
    expect_error(tmp_path / "neg.splat", "non-positive scales")
