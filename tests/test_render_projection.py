"""EWA projection vs gsplat's own pure-torch references (gsplat.cuda._torch_impl).

gsplat's CUDA kernels are tested against these references upstream, so matching them means the
CPU renderer projects exactly like the GPU backend. Both sides evaluate the same formulas in a
possibly different operation order (and kernels differ between machines), so each comparison
allows the rounding of its own computation (tests/tolerances.py): the conic, the inverse of the
2D covariance, amplifies that covariance's rounding by its condition number, which reaches ~10³ in
these scenes; the integer boxes are compared exactly wherever rounding cannot move them.
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

from tolerances import assert_within, eps, rounding_tol  # noqa: E402

from agora_core.render import sample_ffhq_like_cameras  # noqa: E402
from agora_core.render.projection import (  # noqa: E402
    ALPHA_MIN,
    EXTEND_MAX,
    NEAR_PLANE,
    covariance_3d,
    project_gaussians,
    quat_to_rotmat,
)

W, H = 48, 40


def _scene(seed: int, b: int = 3, n: int = 200, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(b, n, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.0, 0.6])
    quats = torch.randn(b, n, 4, generator=g)
    scales = torch.exp(-4.0 + torch.randn(b, n, 3, generator=g))
    cams = sample_ffhq_like_cameras(b, generator=g)
    to = lambda t: t.to(dtype)  # noqa: E731
    return to(means), to(quats), to(scales), to(cams.world2cam()), to(cams.pixel_intrinsics(W, H))


# Roundings one evaluation chains (each side of a comparison): the covariance R S Sᵀ Rᵀ from a
# normalised quaternion (~8); the projection world -> camera -> Jacobian -> J Σ Jᵀ -> inverse (~16).
COVARIANCE_STEPS, PROJECTION_STEPS = 8, 16


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_covariance_matches_gsplat(dtype):
    _, quats, scales, _, _ = _scene(0, dtype=dtype)
    ours = covariance_3d(quats, scales)
    ref, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    # Σ's entries are bounded by its largest eigenvalue, the largest scale squared
    size = scales.amax(-1).double() ** 2
    assert_within(ours, ref, rounding_tol(dtype, size, 2 * COVARIANCE_STEPS)[..., None, None], "covariance")
    rot = quat_to_rotmat(quats)
    eye = torch.eye(3, dtype=dtype).expand_as(rot)
    # R Rᵀ = I up to rounding: |q̂|² = 1 ± 4 eps after normalising scales R Rᵀ by |q̂|⁴ (8 eps), R's entries
    # are sums of terms up to 2 (~5 roundings each, both factors), then R Rᵀ's 3-term sums: ~24 eps of 1
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, rtol=0, atol=rounding_tol(dtype, 1.0, 24))


def _gsplat_projection(means, covars, world2cam, ks):
    """gsplat's reference, one camera per set ([B, C=1] cameras), squeezed back to [B, N]."""
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, world2cam[:, None], ks[:, None], W, H
    )
    return radii[:, 0], means2d[:, 0], depths[:, 0], conics[:, 0]


def projection_tolerances(means, quats, scales, world2cam, ks, dtype, width=W, height=H, opacities=None):
    """What two evaluations of `project_gaussians` in `dtype` may differ by, per Gaussian, from the scene in
    float64: (depth [B,N], means2d [B,N,2], conic [B,N,1], box decided [B,N]). Depth and the camera-space
    position are 3-term dot products plus a translation, of size M = Σ|mean| + Σ|translation|; means2d
    divides by the depth, adding x/z times z's error; the conic C = Σ2d⁻¹ moves by κ(Σ2d) · ‖C‖ times
    Σ2d's relative rounding. A box size ceil(extend · σ) or a cull test is decided (rounding cannot flip
    it) when its float64 value is farther from the integer, the image border or the near plane than its
    own rounding; a Gaussian culled as faint or well behind the near plane is decided too."""
    means, quats, scales, world2cam, ks = (t.double() for t in (means, quats, scales, world2cam, ks))
    exact = project_gaussians(means, covariance_3d(quats, scales), world2cam, ks, width, height)
    means_c = (world2cam[:, None, :3, :3] @ means[..., None])[..., 0] + world2cam[:, None, :3, 3]
    size = means.abs().sum(-1) + world2cam[:, None, :3, 3].abs().sum(-1)
    depth_tol = rounding_tol(dtype, size, 2 * 4)
    z = means_c[..., 2:].abs()
    focal = torch.stack([ks[:, 0, 0], ks[:, 1, 1]], -1)[:, None]
    means2d_tol = rounding_tol(dtype, focal * size[..., None] / z * (1 + means_c[..., :2].abs() / z)
                               + exact.means2d.abs(), 2 * 4)
    a, b, c = exact.conics.unbind(-1)
    conic = torch.stack([a, b, b, c], -1).unflatten(-1, (2, 2))
    eig = torch.linalg.eigvalsh(conic)  # 1/λ of Σ2d, ascending
    conic_tol = rounding_tol(dtype, eig[..., 1] ** 2 / eig[..., 0], 2 * PROJECTION_STEPS)[..., None]  # κ ‖C‖
    sigma = torch.stack([c, a], -1) / (a * c - b * b)[..., None]  # Σ2d's diagonal
    extend = torch.full_like(a, EXTEND_MAX)
    if opacities is not None:  # the opacity-aware box (agora_core/render/projection.py)
        extend = torch.sqrt(2 * torch.log((opacities.double() / ALPHA_MIN).clamp_min(1))).clamp_max(EXTEND_MAX)
    box = extend[..., None] * sigma.sqrt()
    box_tol = rounding_tol(dtype, box, 2 * PROJECTION_STEPS)
    radius = box.ceil()
    edges = torch.stack([exact.means2d + radius, exact.means2d - radius - torch.tensor([width, height])], -1)
    near = exact.depths - NEAR_PLANE
    decided = (((box - box.round()).abs() > box_tol).all(-1)
               & ((edges.abs() > (means2d_tol + box_tol)[..., None]).flatten(-2).all(-1)) & (near > depth_tol))
    if opacities is not None:
        decided |= opacities < ALPHA_MIN  # culled as faint whatever the rounding
    return depth_tol, means2d_tol, conic_tol, decided | (near < -depth_tol)  # behind the near plane


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_projection_matches_gsplat(seed, dtype):
    means, quats, scales, world2cam, ks = _scene(seed, dtype=dtype)
    covars = covariance_3d(quats, scales)
    ours = project_gaussians(means, covars, world2cam, ks, W, H)  # no opacities: gsplat's 3.33σ box
    radii, means2d, depths, conics = _gsplat_projection(means, covars, world2cam, ks)
    visible = (radii > 0).any(-1)
    assert 0.2 < visible.float().mean() < 1.0  # the scene has both visible and culled Gaussians
    depth_tol, means2d_tol, conic_tol, decided = projection_tolerances(means, quats, scales, world2cam, ks, dtype)
    assert decided.float().mean() > 0.99  # (every box, for these seeds)
    assert torch.equal(ours.radii[decided], radii[decided].long())  # same culling, same integer boxes
    assert_within(ours.depths, depths, depth_tol, "depths")
    assert_within(ours.means2d[visible], means2d[visible], means2d_tol[visible], "means2d")
    assert_within(ours.conics[visible], conics[visible], conic_tol[visible], "conics")
    relative = conic_tol[visible] / conics[visible].abs().amax(-1, keepdim=True)
    print(f"conic tolerance / |conic|: median {relative.median():.2g}, max {relative.max():.2g}")
    assert relative.median() < 1000 * eps(dtype)  # a tight check wherever Σ2d is not ill-conditioned


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
