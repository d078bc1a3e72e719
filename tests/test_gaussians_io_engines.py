"""Engine-ready files checked by an independent reader: gsply (PyPI, its own PLY parser, not plyfile).

.ply: the values gsply reads are the float32 of what we wrote, so each is within one float32
rounding of the float64 value (½ eps · |x|; opacity goes through our float64 logit, compared in
logit space the same way). .spz: gsply writes it and reads it back; values come back within half
a quantisation step of the format (positions 2⁻¹² m, log-scales 1/16, alpha 1/255 (in opacity),
colour 1/(0.15·255), SH 1/128 within the format's [−1, 1), quaternion components (1/√2)/511), plus float32 rounding.
"""

from __future__ import annotations

import gsply
import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet, normalize_quat, opacity_logit, read_ply, write_ply
from agora_core.gaussians.io_ply import OPACITY_EPS
from agora_core.gaussians.io_spz import write_spz
from tolerances import assert_within, eps


def random_set(n: int = 50, k: int = 4, seed: int = 0) -> GaussianSet:
    g = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=0.1 * torch.randn(1, n, 3, generator=g),
        log_scales=torch.randn(1, n, 3, generator=g) * 0.5 - 5,
        quats=normalize_quat(torch.randn(1, n, 4, generator=g)),
        sh=0.3 * torch.randn(1, n, k, 3, generator=g),
        opacities=torch.rand(1, n, generator=g) * 0.98 + 0.01,
    )


def f32_tol(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * eps(torch.float32) * x.double().abs() + 1e-300


def bytes_per_vertex(path, n: int) -> float:
    data = path.read_bytes()
    body = len(data) - (data.index(b"end_header\n") + len(b"end_header\n"))
    return body / n


@pytest.mark.parametrize("k, degree", [(1, None), (4, None), (4, 3), (1, 3), (4, 2)])
def test_ply_read_back_by_gsply_matches_within_float32(tmp_path, k, degree):
    g = random_set(k=k)
    path = write_ply(tmp_path / "g.ply", g, sh_degree=degree)
    file_degree = g.sh_degree if degree is None else degree
    floats = 17 + 3 * ((file_degree + 1) ** 2 - 1)
    assert bytes_per_vertex(path, g.num_gaussians) == 4 * floats
    back = gsply.plyread(str(path))
    assert back.means.shape == (g.num_gaussians, 3)
    assert_within(torch.from_numpy(back.means), g.means[0], f32_tol(g.means[0]), "means")
    assert_within(torch.from_numpy(back.scales), g.log_scales[0], f32_tol(g.log_scales[0]), "log-scales")
    assert_within(torch.from_numpy(back.quats), g.quats[0], f32_tol(g.quats[0]), "quaternions (w first)")
    logit = opacity_logit(g.opacities[0].double(), eps=OPACITY_EPS)
    assert_within(torch.from_numpy(back.opacities).reshape(-1), logit, f32_tol(logit), "opacity logits")
    assert_within(torch.from_numpy(back.sh0), g.sh[0, :, 0], f32_tol(g.sh[0, :, 0]), "f_dc")
    shn = torch.from_numpy(np.asarray(back.shN))  # [N, (degree+1)² − 1, 3]
    assert shn.shape == (g.num_gaussians, (file_degree + 1) ** 2 - 1, 3)
    if k > 1:
        assert_within(shn[:, : k - 1], g.sh[0, :, 1:], f32_tol(g.sh[0, :, 1:]), "f_rest (channel-major in the file)")
    assert bool((shn[:, k - 1 :] == 0).all()), "bands the model lacks must be zero"


def test_sh3_ply_is_the_62_float_248_byte_inria_layout_and_reads_back_here(tmp_path):
    g = random_set(k=4)
    path = write_ply(tmp_path / "g.ply", g, sh_degree=3)
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    names = [line.split()[2] for line in header.splitlines() if line.startswith("property float ")]
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(45)]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert len(names) == 62 and bytes_per_vertex(path, g.num_gaussians) == 248
    back = read_ply(path)  # zero higher bands: no truncate_sh needed
    assert back.sh.shape == g.sh.shape
    assert_within(back.sh, g.sh, f32_tol(g.sh), "SH round trip")


def test_an_sh_degree_below_the_model_or_above_3_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sh_degree 0"):
        write_ply(tmp_path / "a.ply", random_set(k=4), sh_degree=0)
    with pytest.raises(ValueError, match="sh_degree 4"):
        write_ply(tmp_path / "b.ply", random_set(k=4), sh_degree=4)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("k", [1, 4])
def test_spz_written_by_gsply_reads_back_within_its_quantisation(tmp_path, k):
    g = random_set(k=k)
    path = write_spz(tmp_path / "g.spz", g)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # version 3: one gzip stream
    assert [p.name for p in tmp_path.iterdir()] == ["g.spz"]  # no staging file left
    back = gsply.read_spz(str(path))
    f32 = 4 * eps(torch.float32)

    def check(value, expected, step, what):
        expected = expected.double()
        assert_within(torch.as_tensor(np.asarray(value)).double().reshape(expected.shape), expected,
                      step / 2 + f32 * (1 + expected.abs()), what)

    check(back.means, g.means[0], 2.0 ** -12, "positions")
    check(back.scales, g.log_scales[0], 1 / 16, "log-scales")
    check(torch.sigmoid(torch.as_tensor(np.asarray(back.opacities)).double()), g.opacities[0], 1 / 255, "opacity")
    check(back.sh0, g.sh[0, :, 0], 1 / (0.15 * 255), "SH DC")
    if k > 1:
        check(back.shN, g.sh[0, :, 1:].clamp(-1, 127 / 128), 1 / 128, "SH degree 1 (the format's range: [-1, 1))")
    q = torch.as_tensor(np.asarray(back.quats)).double()
    q = q * torch.sign((q * g.quats[0].double()).sum(-1, keepdim=True))  # q and −q are one rotation
    check(q, g.quats[0], 2 * 2 ** -0.5 / 511, "quaternions (smallest three, renormalised)")


def test_spz_without_gsply_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gsply(name, *args, **kwargs):
        if name == "gsply":
            raise ImportError("no gsply")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gsply)
    with pytest.raises(AgoraError, match=r"agora\[spz\]"):
        write_spz(tmp_path / "g.spz", random_set())
    assert not (tmp_path / "g.spz").exists()
