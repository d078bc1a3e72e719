"""The gsplat backend: availability report on any machine, agreement with the CPU renderer on CUDA."""

import os
import tempfile

os.environ.setdefault("TORCH_EXTENSIONS_DIR", tempfile.mkdtemp(prefix="agora-torch-ext-"))

import pytest  # noqa: E402
import torch  # noqa: E402

from agora_core.gaussians import GaussianSet  # noqa: E402
from agora_core.render import gsplat_status, rasterize, sample_ffhq_like_cameras  # noqa: E402

CUDA = torch.cuda.is_available()


def test_gsplat_status_reports_without_compiling():
    ext_dir = os.environ["TORCH_EXTENSIONS_DIR"]
    before = sorted(os.listdir(ext_dir)) if os.path.isdir(ext_dir) else []
    usable, reason = gsplat_status()
    assert isinstance(usable, bool) and reason and "\n" not in reason
    assert usable == CUDA
    if not CUDA:
        assert "CUDA" in reason
    after = sorted(os.listdir(ext_dir)) if os.path.isdir(ext_dir) else []
    assert after == before  # no JIT build was started


def _head_like(seed: int, b: int, n: int, device: str) -> GaussianSet:
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(b, n, 3, generator=g), dim=-1)
    return GaussianSet(
        means=d * torch.tensor([0.08, 0.12, 0.10]),
        log_scales=-4.5 + 0.3 * torch.randn(b, n, 3, generator=g),
        quats=torch.randn(b, n, 4, generator=g),
        sh=0.5 * torch.randn(b, n, 4, 3, generator=g),
        opacities=0.1 + 0.85 * torch.rand(b, n, generator=g),
    ).to(device)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device: gsplat has no CPU path")
@pytest.mark.parametrize("size,n", [(64, 2000), (128, 8000)])
def test_gsplat_and_torch_backends_agree(size, n):
    # Same semantics (classic 3DGS: 0.3 px² blur, alpha cap 0.999, 1/255 cut, T <= 1e-4 stop).
    # gsplat uses float32 fast-math exp, so a pair whose alpha sits within rounding of 1/255 can
    # flip and move a pixel by up to ~1/255: bound the typical error tightly, the worst loosely.
    gs = _head_like(0, 2, n, "cuda")
    cams = sample_ffhq_like_cameras(2, generator=torch.Generator().manual_seed(1), device="cuda")
    leaves = {k: gs.map(lambda t: t.clone().requires_grad_()) for k in ("gsplat", "torch")}
    out, grads = {}, {}
    weights = torch.rand(2, 4, size, size, device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    for backend, g in leaves.items():
        rgb, alpha = rasterize(g, cams, size, size, background=(0.2, 0.5, 1.0), backend=backend)
        out[backend] = torch.cat([rgb, alpha], 1)
        (out[backend] * weights).sum().backward()
        grads[backend] = {k: getattr(g, k).grad for k in ("means", "log_scales", "sh", "opacities")}
    diff = (out["gsplat"] - out["torch"]).abs()
    assert out["torch"][:, 3].mean() > 0.1
    assert diff.mean() < 1e-5, diff.mean()
    assert torch.quantile(diff.flatten(), 0.999) < 1e-3
    assert diff.max() < 1.5 / 255
    for k, ref in grads["gsplat"].items():
        rel = (grads["torch"][k] - ref).norm() / ref.norm()
        assert rel < 1e-2, (k, rel.item())
