"""INRIA-layout .ply: exact property list/order, round trip, atomic writes, bad files -> AgoraError.

Tolerances: positions, log-scales and SH are stored as float32 and come back bit-exact; opacity
goes through logit (float64) -> float32 -> sigmoid (float64), which costs ≤ 2e-7 (float32
rounding of a logit ≤ 13.8, times the sigmoid's slope ≤ 1/4); quaternions are renormalised on read
(a few float32 ulp). Hence atol 1e-6 for those two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet, inria_property_names, normalize_quat, read_ply, write_ply
from agora_core.gaussians import io_ply

# The list gaussian-splatting's construct_list_of_attributes() builds, spelled out by hand.
INRIA_DEGREE_0 = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                  "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
INRIA_DEGREE_1 = INRIA_DEGREE_0[:9] + [f"f_rest_{i}" for i in range(9)] + INRIA_DEGREE_0[9:]


def random_set(b: int = 1, n: int = 64, k: int = 4) -> GaussianSet:
    return GaussianSet(
        means=torch.randn(b, n, 3),
        log_scales=torch.randn(b, n, 3) - 4,
        quats=normalize_quat(torch.randn(b, n, 4)),
        sh=torch.randn(b, n, k, 3),
        opacities=torch.rand(b, n) * 0.98 + 0.01,
    )


def assert_same_set(a: GaussianSet, b: GaussianSet) -> None:
    assert torch.equal(a.means, b.means) and torch.equal(a.log_scales, b.log_scales) and torch.equal(a.sh, b.sh)
    torch.testing.assert_close(a.opacities, b.opacities, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(a.quats, b.quats, rtol=0.0, atol=1e-6)


@pytest.mark.parametrize("degree, names", [(0, INRIA_DEGREE_0), (1, INRIA_DEGREE_1)])
def test_property_names_and_order_match_inria_exactly(tmp_path, degree, names):
    path = write_ply(tmp_path / "g.ply", random_set(k=(degree + 1) ** 2))
    ply = PlyData.read(str(path))
    assert [el.name for el in ply.elements] == ["vertex"]
    assert [p.name for p in ply["vertex"].properties] == names == inria_property_names(degree)
    assert all(p.val_dtype in ("f4", "float32", "float") for p in ply["vertex"].properties)
    assert not ply.text and ply.byte_order == "<"
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_f_rest_is_channel_major_and_opacity_is_a_logit(tmp_path):
    g = random_set(n=5)
    ply = PlyData.read(str(write_ply(tmp_path / "g.ply", g)))
    v = ply["vertex"]
    for c in range(3):
        assert np.array_equal(v[f"f_dc_{c}"], g.sh[0, :, 0, c].numpy())
        for k in range(1, 4):
            assert np.array_equal(v[f"f_rest_{c * 3 + (k - 1)}"], g.sh[0, :, k, c].numpy())
    np.testing.assert_allclose(v["opacity"], torch.logit(g.opacities[0].double()).numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(v["scale_0"], g.log_scales[0, :, 0].numpy())
    np.testing.assert_array_equal(v["rot_0"], g.quats[0, :, 0].numpy())  # w first


@pytest.mark.parametrize("k", [1, 4])
def test_round_trip(tmp_path, k):
    g = random_set(k=k)
    assert_same_set(read_ply(write_ply(tmp_path / "g.ply", g)), g)


def test_batch_index_selects_one_set_and_a_batch_without_it_is_refused(tmp_path):
    g = random_set(b=3)
    assert_same_set(read_ply(write_ply(tmp_path / "g.ply", g, batch_index=1)), g.select(1))
    with pytest.raises(ValueError, match="batch_index"):
        write_ply(tmp_path / "h.ply", g)


def test_opacity_0_and_1_are_clamped_to_finite_logits(tmp_path):
    g = random_set(n=2)
    g.opacities = torch.tensor([[0.0, 1.0]])
    back = read_ply(write_ply(tmp_path / "g.ply", g))
    logits = PlyData.read(str(tmp_path / "g.ply"))["vertex"]["opacity"]
    assert np.isfinite(logits).all() and np.abs(logits).max() < 14
    torch.testing.assert_close(back.opacities, g.opacities, rtol=0.0, atol=1.1e-6)  # the clamp eps is 1e-6


def test_reads_a_foreign_degree_3_double_ply_only_with_truncation(tmp_path):
    n = 4
    rng = np.random.default_rng(0)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # no normals
    values = rng.normal(size=(n, len(names)))
    vertex = np.array([tuple(row) for row in values], dtype=[(name, "f8") for name in names])
    path = tmp_path / "deg3.ply"
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order=">").write(str(path))
    with pytest.raises(AgoraError, match="SH degree 3.*truncate_sh=True"):
        read_ply(path)
    g = read_ply(path, truncate_sh=True)
    assert g.sh.shape == (1, n, 4, 3)
    rest = values[:, 6:51].reshape(n, 3, 15)  # channel-major: [colour][coefficient]
    np.testing.assert_allclose(g.sh[0, :, 1:, :].numpy(), rest[:, :, :3].transpose(0, 2, 1).astype(np.float32))
    quats = values[:, -4:] / np.linalg.norm(values[:, -4:], axis=1, keepdims=True)  # normalised on read
    np.testing.assert_allclose(g.quats[0].numpy(), quats, rtol=0, atol=1e-6)


def test_reads_ascii_ply(tmp_path):
    g = random_set(n=6)
    binary = PlyData.read(str(write_ply(tmp_path / "g.ply", g)))
    PlyData(binary.elements, text=True).write(str(tmp_path / "ascii.ply"))
    assert (tmp_path / "ascii.ply").read_bytes().startswith(b"ply\nformat ascii 1.0\n")
    assert_same_set(read_ply(tmp_path / "ascii.ply"), g)  # plyfile prints floats round-trippably


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_ply(tmp_path / "g.ply", random_set(n=3))
    before = path.read_bytes()

    def broken_write(self, stream):
        stream.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(io_ply.PlyData, "write", broken_write)
    with pytest.raises(RuntimeError):
        write_ply(path, random_set(n=3))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.ply"]


# --- bad files -------------------------------------------------------------------------------------


def write_vertex(path, names, n=3, **kwargs):
    vertex = np.zeros(n, dtype=[(name, "f4") for name in names])
    PlyData([PlyElement.describe(vertex, "vertex")], **kwargs).write(str(path))
    return path


def expect_error(path, *words):
    with pytest.raises(AgoraError) as info:
        read_ply(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.ply", "no such file")


def test_missing_properties_are_named(tmp_path):
    names = [n for n in INRIA_DEGREE_0 if n not in ("opacity", "rot_3")]
    expect_error(write_vertex(tmp_path / "m.ply", names), "missing Gaussian properties opacity, rot_3;")


def test_a_mesh_ply_without_vertex_gaussians(tmp_path):
    face = np.zeros(2, dtype=[("a", "f4")])
    path = tmp_path / "face.ply"
    PlyData([PlyElement.describe(face, "face")]).write(str(path))
    expect_error(path, "no 'vertex' element")


def test_truncated_file(tmp_path):
    path = write_ply(tmp_path / "t.ply", random_set(n=20))
    path.write_bytes(path.read_bytes()[:-10])
    expect_error(path, "truncated", "early end-of-file")


@pytest.mark.parametrize("content", [b"", b"hello\n", b"ply\nformat binary_little_endian 1.0\nelement", bytes(range(256))])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "g.ply"
    path.write_bytes(content)
    expect_error(path, "not a readable PLY file")


def test_odd_f_rest_count(tmp_path):
    names = INRIA_DEGREE_0[:9] + [f"f_rest_{i}" for i in range(5)] + INRIA_DEGREE_0[9:]
    expect_error(write_vertex(tmp_path / "r.ply", names), "5 f_rest_*")


def test_non_finite_values_are_named(tmp_path):
    g = random_set(n=4)
    g.means[0, 2, 1] = float("nan")
    expect_error(write_ply(tmp_path / "n.ply", g), "non-finite values in y")
