"""EWA projection vs gsplat's own pure-torch references (gsplat.cuda._torch_impl).

gsplat's CUDA kernels are tested against these references upstream, so matching them means the
CPU renderer projects exactly like the GPU backend. Both sides evaluate the same formulas in a
different operation order: float64 agrees to ~1e-12 (we ask rtol 1e-9); in float32 the conic's
division by a determinant that can be small relative to its terms amplifies rounding by up to a
few hundred ulps, hence rtol 1e-5 there.
"""

import os
import tempfile

os.environ.setdefault("TORCH_EXTENSIONS_DIR", tempfile.mkdtemp(prefix="agora-torch-ext-"))

import pytest  # noqa: E402
import torch  # noqa: E402
from gsplat.cuda._torch_impl import (  # noqa: E402  (pure torch, compiles nothing)
    _fully_fused_projection,
    _quat_scale_to_covar_preci,
)

from agora_core.render import sample_ffhq_like_cameras  # noqa: E402
from agora_core.render.projection import covariance_3d, project_gaussians, quat_to_rotmat  # noqa: E402

W, H = 48, 40


def _scene(seed: int, b: int = 3, n: int = 200, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(b, n, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.0, 0.6])
    quats = torch.randn(b, n, 4, generator=g)
    scales = torch.exp(-4.0 + torch.randn(b, n, 3, generator=g))
    cams = sample_ffhq_like_cameras(b, generator=g)
    to = lambda t: t.to(dtype)  # noqa: E731
    return to(means), to(quats), to(scales), to(cams.world2cam()), to(cams.pixel_intrinsics(W, H))


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_covariance_matches_gsplat(dtype, rtol):
    _, quats, scales, _, _ = _scene(0, dtype=dtype)
    ours = covariance_3d(quats, scales)
    ref, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * ref.abs().max().item())
    rot = quat_to_rotmat(quats)
    eye = torch.eye(3, dtype=dtype).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, rtol=0, atol=10 * torch.finfo(dtype).eps)


def _gsplat_projection(means, covars, world2cam, ks):
    """gsplat's reference, one camera per set ([B, C=1] cameras), squeezed back to [B, N]."""
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, world2cam[:, None], ks[:, None], W, H
    )
    return radii[:, 0], means2d[:, 0], depths[:, 0], conics[:, 0]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_projection_matches_gsplat(seed, dtype, rtol):
    means, quats, scales, world2cam, ks = _scene(seed, dtype=dtype)
    covars = covariance_3d(quats, scales)
    ours = project_gaussians(means, covars, world2cam, ks, W, H)  # no opacities: gsplat's 3.33σ box
    radii, means2d, depths, conics = _gsplat_projection(means, covars, world2cam, ks)
    visible = (radii > 0).any(-1)
    assert 0.2 < visible.float().mean() < 1.0  # the scene has both visible and culled Gaussians
    assert torch.equal(ours.radii, radii.long())  # same culling, same integer boxes
    torch.testing.assert_close(ours.depths, depths, rtol=rtol, atol=0)
    torch.testing.assert_close(ours.means2d[visible], means2d[visible], rtol=rtol, atol=rtol)
    scale = conics.abs().max().item()
    torch.testing.assert_close(ours.conics[visible], conics[visible], rtol=rtol, atol=rtol * scale)


def test_projection_gradients_match_gsplat():
    means, quats, scales, world2cam, ks = _scene(3, n=60)
    leaves = [t.clone().requires_grad_() for t in (means, quats, scales)]
    weights = torch.randn(3, 60, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))

    def loss(m2d, conic):
        return (torch.cat([m2d, conic], -1) * weights).sum()

    ours = project_gaussians(leaves[0], covariance_3d(leaves[1], leaves[2]), world2cam, ks, W, H)
    g_ours = torch.autograd.grad(loss(ours.means2d, ours.conics), leaves)
    covars_ref, _ = _quat_scale_to_covar_preci(leaves[1], leaves[2], compute_preci=False)
    _, m2d, _, conic = _gsplat_projection(leaves[0], covars_ref, world2cam, ks)
    g_ref = torch.autograd.grad(loss(m2d, conic), leaves)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * b.abs().max().item())


def test_opacity_aware_box_holds_every_bright_pixel():
    # The box must contain every pixel centre where o·exp(-½ dᵀ conic d) >= 1/255.
    means, quats, scales, world2cam, ks = _scene(4, b=1, n=300)
    opac = torch.rand(1, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    proj = project_gaussians(means, covariance_3d(quats, scales), world2cam, ks, W, H, opac)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(-1, 1, 2).double()
    d = pix - proj.means2d[0]  # [HW, N, 2]
    a, b, c = proj.conics[0].unbind(-1)
    sigma = 0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) + b * d[..., 0] * d[..., 1]
    bright = (opac[0] * torch.exp(-sigma) >= 1 / 255) & (proj.depths[0] > 0.01)
    inside = (d.abs() <= proj.radii[0].double()).all(-1)
    assert bright.any()
    assert not (bright & ~inside).any()
    assert (proj.radii[0] > 0).all(-1)[bright.any(0)].all()  # no culled Gaussian is bright on-screen
