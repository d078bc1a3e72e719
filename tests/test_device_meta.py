"""Device placement of the model code, checked without a GPU: everything runs on PyTorch's `meta`.

A tensor created on the CPU by accident inside a forward pass (`torch.zeros(n)` without `device=`,
a constant kept as a plain attribute instead of a buffer) only fails on a user's GPU. Here the
models, losses and per-frame paths run on meta inputs and must return meta tensors only.

Plain meta execution is not enough: elementwise ops raise on a meta/CPU mix, but mm, bmm, einsum,
linear, conv, gather, index_select and in-place ops do not (bmm and einsum even return a CPU
tensor). `SameDevice` therefore checks every aten op for CUDA's rule: all tensor arguments on one
device, except 0-dim CPU tensors (CUDA takes them as scalars), CPU index tensors of advanced
indexing (CUDA accepts them) and copies between devices.

What cannot run on meta, and how it is handled:
- smplx's `lbs` indexes a Python list with `parents[i]` (a host read): `HeadModel.parents` is a
  plain CPU attribute, never moved (indexing a CUDA tensor with it is legal too).
- the rasterizer (gsplat / numba / data-dependent sorting) cannot run on meta: the cue test swaps
  it for a stand-in returning meta tensors of the right shape; the cue's boolean masking
  (`nonzero`) runs with torch's "assume all non-zero" meta setting (only a sum follows it).
- `float(value)` for logging in `regularizer_loss` is a host read: stubbed with 0.
"""

from __future__ import annotations

import copy
import dataclasses
import traceback

import pytest
import torch
import torch.fx.experimental._config as fx_config
from test_train_fixtures import cached_build_head, tiny_config
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import agora_core.models.dual_discrimination as dual_discrimination
from agora_core.gaussians import GaussianSet
from agora_core.gaussians.io_splat import splat_colours
from agora_core.head import FlameParams
from agora_core.invert.losses import ReconstructionLoss, psnr
from agora_core.invert.pti import FrameParameters
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import CoefficientMLP
from agora_core.mobile.residuals import RESIDUAL_GROUPS, attribute_residuals
from agora_core.models.agora_discriminator import AgoraDiscriminator
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.train import losses
from agora_core.train.build import CueRenderer
from agora_core.train.loop import _update_ema

B, RES = 2, 16  # batch, render resolution of tiny_config()
META = torch.device("meta")
aten = torch.ops.aten
_COPIES = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default, aten._copy_from_and_resize.default,
           aten.lift_fresh.default, aten.lift_fresh_copy.default}
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


class SameDevice(TorchDispatchMode):
    """Raise on any aten op whose tensor arguments sit on two devices (CUDA's rule, module doc)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _COPIES:
            checked = [args[0], *args[2:]] if func in _INDEXING else list(args)  # args[1]: the indices
            devices = {t.device for t in tree_flatten((checked, kwargs))[0]
                       if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.ndim == 0)}
            if len(devices) > 1:
                where = "".join(traceback.format_stack(limit=6)[:-1])
                raise AssertionError(f"{func} mixes devices {sorted(map(str, devices))}:\n{where}")
        return func(*args, **kwargs)


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device=META)


def assert_on_meta(*values) -> None:
    """Every tensor in values (tensors, dataclasses of tensors, dicts, lists) lies on meta."""
    flat = []
    for v in values:
        if dataclasses.is_dataclass(v):  # GaussianSet, IdentityCache (asdict would deep-copy)
            v = [getattr(v, f.name) for f in dataclasses.fields(v)]
        flat += [t for t in tree_flatten(v)[0] if isinstance(t, torch.Tensor)]
    assert flat, "nothing to check"
    assert all(t.device == META for t in flat), [str(t.device) for t in flat]


def to_meta(module: torch.nn.Module) -> torch.nn.Module:
    """`module.to("meta")`; head models keep `parents` on the CPU by design (head/model.py)."""
    module = module.to(META)
    for m in module.modules():
        if hasattr(m, "parents") and hasattr(m, "lbs_weights"):
            assert m.parents.device.type == "cpu", "HeadModel.parents must stay on the CPU"
    return module


def meta_flame(head, b: int = B) -> FlameParams:
    return FlameParams(shape=meta(b, head.num_shape), expression=meta(b, head.num_expr), jaw=meta(b, 3),
                       neck=meta(b, 3), eyes=meta(b, 6), eyelids=meta(b, 2))


@pytest.fixture(autouse=True)
def same_device():
    torch.set_num_threads(1)
    with SameDevice():
        yield


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def head(config):
    return cached_build_head(config.head)


@pytest.fixture(scope="module")
def generator(config, head):
    return to_meta(AgoraGenerator(config.generator, copy.deepcopy(head)))


@pytest.fixture(scope="module")
def discriminator(config):
    return AgoraDiscriminator(config.discriminator, RES).to(META)


def test_the_check_catches_a_cpu_tensor_that_meta_alone_lets_through():
    with pytest.raises(AssertionError, match="mixes devices"):
        meta(2, 3) @ torch.zeros(3, 3)  # on meta alone this passes
    with pytest.raises(AssertionError, match="mixes devices"):
        meta(3).mul_(torch.ones(3))  # ... and so does this
    meta(3)[torch.tensor([0, 2])]  # CPU indices: legal on CUDA
    meta(3) + torch.tensor(1.0)  # 0-dim CPU tensor: a scalar on CUDA


def test_generator_stays_on_the_device(generator, head):
    assert {b.device for name, b in generator.named_buffers() if not name.endswith("parents")} == {META}
    m = generator.num_gaussians
    for noise_mode in ("random", "const", "none"):
        out = generator(meta(B, 16), meta(B, 25), meta_flame(head), 0.7, noise_mode=noise_mode)
        assert out.gaussians.means.shape == (B, m, 3) and out.gaussians.sh.shape == (B, m, 4, 3)
        assert_on_meta(out.gaussians, out.regularizers)
    cache = generator.identity(meta(1, 16), meta(1, 25), meta(1, head.num_shape), noise_mode="const")
    assert_on_meta(cache)
    out = generator.animate(cache, FlameParams(expression=meta(B, head.num_expr), jaw=meta(B, 3)), noise_mode="const")
    assert out.gaussians.batch_size == B
    assert_on_meta(out.gaussians, out.regularizers)


def test_generator_ablations_stay_on_the_device(config, head):
    """Table 2's other branches: shape through the mapping network, no deformation branch, no mask."""
    variant = dataclasses.replace(config.generator, shape_conditioning="mapping", deformation_branch=False,
                                  residual_mask="none", position_zero_init=False, sh_degree=0)
    G = to_meta(AgoraGenerator(variant, copy.deepcopy(head)))
    out = G(meta(B, 16), meta(B, 25), meta_flame(head).replace(eyelids=None))
    assert out.gaussians.sh.shape == (B, G.num_gaussians, 1, 3)
    assert_on_meta(out.gaussians, out.regularizers)


@pytest.mark.parametrize("cue", ["none", "projection", "uv", "displacement"])
def test_discriminator_stays_on_the_device(config, head, cue):
    D = AgoraDiscriminator(dataclasses.replace(config.discriminator, cue=cue), RES).to(META)
    logits = D(meta(B, 3, RES, RES), meta(B, 3, RES, RES) if D.uses_cue else None, meta(B, 25), meta_flame(head))
    assert logits.shape == (B, 1)
    assert_on_meta(logits)


@pytest.mark.parametrize("cue", ["uv", "displacement"])
def test_dual_discrimination_cue_stays_on_the_device(config, head, generator, monkeypatch, cue):
    def rasterize(gaussians, cameras, width, height, background=1.0, backend="auto"):  # meta stand-in
        assert_on_meta(gaussians, cameras.cam2world, cameras.intrinsics)
        b = gaussians.batch_size
        return gaussians.means.new_empty(b, 3, height, width), gaussians.means.new_empty(b, 1, height, width)

    monkeypatch.setattr(dual_discrimination, "rasterize", rasterize)
    train = dataclasses.replace(config, discriminator=dataclasses.replace(config.discriminator, cue=cue))
    render = CueRenderer(generator.head, generator.samples, train)
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        cue_image = render(meta_flame(head), meta(B, 25))
    assert cue_image.shape == (B, 3, RES, RES)
    assert_on_meta(cue_image, render(meta_flame(head), meta(B, 25), enabled=False))


def test_losses_and_regularisers_stay_on_the_device(config, head, generator, discriminator, monkeypatch):
    monkeypatch.setattr(losses, "float", lambda t: 0.0, raising=False)  # logging reads the host
    out = generator(meta(B, 16), meta(B, 25), meta_flame(head))
    fake, cue = meta(B, 3, RES, RES).requires_grad_(), meta(B, 3, RES, RES)
    logits = discriminator(*losses.shift_augment(fake, cue, config.shift_augmentation), meta(B, 25))
    loss_reg, _ = losses.regularizer_loss(out.regularizers, config.loss)
    loss_g = losses.generator_loss(logits) + loss_reg
    no_weights = dataclasses.replace(config.loss, **{f: 0.0 for f in losses.REGULARIZER_WEIGHTS.values()})
    zero_reg, _ = losses.regularizer_loss(out.regularizers, no_weights)
    loss_g.backward()
    assert_on_meta(loss_g, zero_reg, fake.grad, [p.grad for p in generator.parameters() if p.grad is not None])

    real, real_cue = meta(B, 3, RES, RES).requires_grad_(), meta(B, 3, RES, RES).requires_grad_()
    logits_real = discriminator(real, real_cue, meta(B, 25))
    r1 = losses.r1_penalty(logits_real, [real, real_cue])
    loss_d = losses.discriminator_loss(logits_real, logits.detach()) + r1
    loss_d.backward()
    assert r1.shape == () and loss_d.shape == ()
    assert_on_meta(r1, loss_d, [p.grad for p in discriminator.parameters()])
    generator.zero_grad(set_to_none=True)
    discriminator.zero_grad(set_to_none=True)


def test_ema_update_stays_on_the_device(config, generator):
    G_ema = copy.deepcopy(generator)
    _update_ema(G_ema, generator, 100, config)
    assert_on_meta(list(G_ema.parameters()))


def test_agora_m_runtime_stays_on_the_device(config, head, generator):
    k, m = 3, generator.num_gaussians
    basis = GaussianBasis({g: torch.randn(k, m * d) for g, d in RESIDUAL_GROUPS.items()},  # CPU: moved by the avatar
                          {g: torch.ones(k) for g in RESIDUAL_GROUPS}, {g: torch.ones(k) for g in RESIDUAL_GROUPS}, m)
    mlp = CoefficientMLP(config.generator.w_dim, config.generator.expr_cond_dim, k, hidden=8)
    cache = generator.identity(meta(1, 16), meta(1, 25), meta(1, head.num_shape), noise_mode="const")
    avatar = BlendshapeAvatar.from_generator(generator, cache, basis, mlp)
    frames = FlameParams(expression=meta(B, head.num_expr), jaw=meta(B, 3), eyelids=meta(B, 2))
    posed = avatar.animate(frames)
    assert posed.means.shape == (B, m, 3) and posed.opacities.shape == (B, m)
    assert_on_meta(posed, list(mlp.buffers()))
    full = generator.animate(cache, frames, noise_mode="const").gaussians
    coefficients = basis.to(META).project(attribute_residuals(full, avatar.neutral))
    assert coefficients["xyz"].shape == (B, k)
    assert_on_meta(coefficients, avatar.blend(coefficients))


def test_pti_losses_and_frame_parameters_stay_on_the_device(head):
    loss = ReconstructionLoss(None)
    for size in (RES, 8):  # SSIM, and L2 alone below SSIM's window
        terms = loss(meta(B, 3, size, size), meta(B, 3, size, size))
        assert_on_meta(terms.total, terms.l2, terms.perceptual)
    params = FrameParameters(meta_flame(head), tunable=True)
    cameras = params.cameras(meta(B, 25))
    assert cameras.cam2world.shape == (B, 4, 4)
    assert_on_meta(params.deviation(), params.flame(), cameras.cam2world, psnr(meta(B, 3, 4, 4), meta(B, 3, 4, 4)))


def test_splat_colours_from_a_camera_position_stay_on_the_device():
    n = 5
    g = GaussianSet(meta(1, n, 3), meta(1, n, 3), meta(1, n, 4), meta(1, n, 4, 3), meta(1, n))
    colours = splat_colours(g, [0.0, 0.0, 1.0])
    assert colours.shape == (1, n, 3)
    assert_on_meta(colours)
