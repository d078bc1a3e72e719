"""SWD on Laplacian-pyramid patches: fast vs reference, identity, monotone in degradation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agora_core.metrics.swd import (
    laplacian_pyramid,
    patch_positions,
    random_directions,
    sample_descriptors,
    sliced_wasserstein,
    sliced_wasserstein_reference,
    swd,
)


def _images(n: int = 24, res: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images with structure at several scales, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = sum(F.interpolate(torch.rand(n, 3, s, s, generator=g), size=res, mode="bilinear", align_corners=False)
            for s in (4, 8, 16, 32)) / 4
    return x.clamp(0, 1)


def _blur(x: torch.Tensor, times: int) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    k2 = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
    for _ in range(times):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    return x


def test_fast_swd_matches_the_reference():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(200, 12, generator=g), torch.randn(200, 12, generator=g) * 1.3 + 0.2
    dirs = random_directions(12, 16, g)
    # float32 matmul vs the same products summed in Python: equal to rounding (1e-5 relative)
    torch.testing.assert_close(sliced_wasserstein(a, b, dirs), sliced_wasserstein_reference(a, b, dirs).float(),
                               rtol=1e-5, atol=1e-6)


def test_pyramid_reconstructs_the_image_and_descriptors_have_the_patch_shape():
    x = _images(4, 32)
    levels = laplacian_pyramid(x)
    assert [lv.shape[-1] for lv in levels] == [32, 16]
    up = F.interpolate(levels[1], scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(levels[0] + up, x)  # band + upsampled low-pass = image (exactly, up to rounding)
    ys, xs = patch_positions(4, 32, 32, 5, torch.Generator().manual_seed(0))
    desc = sample_descriptors(levels[0], ys, xs)
    assert desc.shape == (20, 3, 7, 7)
    torch.testing.assert_close(desc[6], levels[0][1, :, ys[1, 1]:ys[1, 1] + 7, xs[1, 1]:xs[1, 1] + 7])


def test_swd_of_a_set_with_itself_is_zero():
    x = _images()
    out = swd(x, x.clone(), descriptors_per_image=32, directions=64, repeats=2)
    assert out["swd"] < 1e-6 and set(out) == {"swd", "swd_32", "swd_16"}


def test_swd_grows_with_blur_and_with_noise():
    a = _images(n=16, seed=0)
    b = a.clone()
    kw = dict(descriptors_per_image=32, directions=64, repeats=2, seed=3)
    blur = [swd(a, _blur(b, t), **kw)["swd"] for t in (0, 1, 3, 8)]
    assert blur[0] < 1e-6 and all(x < y for x, y in zip(blur, blur[1:])), blur
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(b.shape, generator=g)
    noisy = [swd(a, (b + s * noise).clamp(0, 1), **kw)["swd"] for s in (0.0, 0.05, 0.15, 0.4)]
    assert noisy[0] < 1e-6 and all(x < y for x, y in zip(noisy, noisy[1:])), noisy
