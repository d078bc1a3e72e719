"""StyleGAN2 building blocks (agora_core.models): shapes, fast-vs-reference twins, statistics, ONNX.

Tolerances: float64 comparisons of two formulations of the same maths use atol 1e-10 — they
differ only in summation order, whose rounding is ~1e-15 per term times a few hundred terms;
float32 checks use 1e-5 for the same reason at single precision (sums of ~100 O(1) terms).
"""

from __future__ import annotations

import math

import onnxruntime as ort
import pytest
import torch
from torch import nn

from agora_core.models import (
    Discriminator,
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    ModulatedConv,
    NoiseInjection,
    SynthesisBlock,
    SynthesisNetwork,
    SynthesisTail,
    ToOutput,
    count_parameters,
    downsample2d,
    downsample2d_reference,
    minibatch_std,
    modulated_conv2d,
    modulated_conv2d_reference,
    normalize_shape_condition,
    upsample2d,
    upsample2d_reference,
)

F64_ATOL = 1e-10
F32_ATOL = 1e-5

# Small channel settings so the whole suite runs in seconds on 2 CPU cores.
SMALL = dict(channel_base=256, channel_max=32)


def _grads(fn, *inputs):
    """Value of fn(*inputs) and d(sum(out · probe))/d inputs for a fixed random probe."""
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), inputs)
    return out.detach(), grads


# ----------------------------------------------------------------------------- FIR resampling
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_fir_resampling_matches_reference(size):
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    for fast, ref in ((upsample2d, upsample2d_reference), (downsample2d, downsample2d_reference)):
        torch.manual_seed(1)  # same probe for both
        a, ga = _grads(fast, x)
        torch.manual_seed(1)
        b, gb = _grads(ref, x)
        torch.testing.assert_close(a, b, atol=F64_ATOL, rtol=0)
        torch.testing.assert_close(ga[0], gb[0], atol=F64_ATOL, rtol=0)
    h, w = size
    assert upsample2d(x).shape == (3, 4, 2 * h, 2 * w)
    assert downsample2d(x).shape == (3, 4, h // 2, w // 2)


def test_fir_resampling_keeps_constants_in_the_interior():
    x = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(upsample2d(x)[..., 2:-2, 2:-2], torch.tensor(3.0))
    assert torch.allclose(downsample2d(x)[..., 1:-1, 1:-1], torch.tensor(3.0))


# ----------------------------------------------------------------------------- modulated conv
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("k", [1, 3])
def test_modulated_conv_fast_matches_grouped_reference(up, demodulate, batch, k):
    x = torch.randn(batch, 6, 7, 9, dtype=torch.float64)
    w = torch.randn(5, 6, k, k, dtype=torch.float64)
    s = torch.randn(batch, 6, dtype=torch.float64)
    torch.manual_seed(1)
    a, ga = _grads(lambda *t: modulated_conv2d(*t, demodulate=demodulate, up=up), x, w, s)
    torch.manual_seed(1)
    b, gb = _grads(lambda *t: modulated_conv2d_reference(*t, demodulate=demodulate, up=up), x, w, s)
    assert a.shape == (batch, 5, 7 * up, 9 * up)
    torch.testing.assert_close(a, b, atol=F64_ATOL, rtol=0)
    for g1, g2 in zip(ga, gb):
        torch.testing.assert_close(g1, g2, atol=F64_ATOL, rtol=0)
    # float32: same comparison at single precision
    a32 = modulated_conv2d(x.float(), w.float(), s.float(), demodulate, up)
    b32 = modulated_conv2d_reference(x.float(), w.float(), s.float(), demodulate, up)
    torch.testing.assert_close(a32, b32, atol=F32_ATOL * (1 if demodulate else 10), rtol=F32_ATOL)


def test_modulated_conv_up2_is_upsample_of_1x1_conv():
    """Independent check of the up path: a 1×1 modulated conv commutes with FIR upsampling."""
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    w, s = torch.randn(3, 4, 1, 1, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(modulated_conv2d(x, w, s, True, up=2),
                               upsample2d(modulated_conv2d(x, w, s, True, up=1)), atol=F64_ATOL, rtol=0)


def test_demodulation_keeps_unit_second_moment():
    """E[y²] = Σ (w'·)² E[x²] = 1 for iid unit inputs and demodulated weights (StyleGAN2 eq. 3)."""
    layer = ModulatedConv(64, 64, 32)
    x = torch.randn(4, 64, 32, 32)
    style = 3.0 * torch.randn(4, 32)  # styles far from 1, so demodulation has work to do
    with torch.no_grad():
        y = layer(x, style)[..., 1:-1, 1:-1]  # border pixels see zero padding
        layer.demodulate = False
        y_raw = layer(x, style)[..., 1:-1, 1:-1]
    rms = y.square().mean().sqrt().item()
    # ~230k correlated samples: the sampling error of the RMS is well under 1 %; 4 % is loose.
    assert abs(rms - 1.0) < 0.04, rms
    assert y_raw.square().mean().sqrt().item() > 1.5  # and without demodulation it is far from 1


# ----------------------------------------------------------------------------- equalised LR
@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_equal_linear_init_and_runtime_scale(lr_mul):
    layer = EqualLinear(512, 256, bias_init=0.5, lr_mul=lr_mul)
    # 131k samples of N(0, 1/lr_mul²): the std is within 1 % with overwhelming probability
    assert abs(layer.weight.std().item() * lr_mul - 1.0) < 0.02
    assert layer.weight_gain == pytest.approx(lr_mul / math.sqrt(512))
    with torch.no_grad():
        y = layer(torch.randn(2048, 512))
    assert torch.allclose(y.mean(0).mean(), torch.tensor(0.5), atol=0.05)  # effective bias = bias_init
    assert abs(y.var(0).mean().item() - 1.0) < 0.1  # unit variance in -> unit variance out


def test_equal_conv_scale_and_downsampling():
    conv = EqualConv2d(32, 16, 3)
    assert abs(conv.weight.std().item() - 1.0) < 0.05
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(32 * 9))
    with torch.no_grad():
        y = conv(torch.randn(8, 32, 16, 16))[..., 1:-1, 1:-1]
    assert abs(y.var().item() - 1.0) < 0.15
    x = torch.randn(3, 32, 16, 16)
    assert EqualConv2d(32, 16, 3, down=2)(x).shape == (3, 16, 8, 8)
    assert EqualConv2d(32, 16, 1, down=2, bias=False)(x).shape == (3, 16, 8, 8)
    lrelu = EqualConv2d(32, 16, 3, activation="lrelu", conv_clamp=0.5)(x)
    assert lrelu.abs().max() <= 0.5


# ----------------------------------------------------------------------------- shape conditioning
def test_shape_condition_is_resized_std_normalised_and_concatenated():
    layer = ModulatedConv(8, 4, 16, cond_channels=3)
    assert layer.weight.shape == (4, 11, 3, 3) and layer.affine.out_features == 11
    x, style = torch.randn(3, 8, 8, 8), torch.randn(3, 16)
    cond = torch.randn(3, 3, 64, 64) + 0.5  # non-zero mean: the mean must survive (not subtracted)
    y = layer(x, style, cond)
    assert y.shape == (3, 4, 8, 8)
    torch.testing.assert_close(layer(x, style, 10.0 * cond), y, atol=F32_ATOL, rtol=F32_ATOL)
    assert (layer(x, style, torch.randn_like(cond)) - y).abs().max() > 1e-2  # cond matters
    # per-sample scale invariance (each sample normalised alone)
    scales = torch.tensor([1.0, 7.0, 0.01])[:, None, None, None]
    torch.testing.assert_close(layer(x, style, scales * cond), y, atol=F32_ATOL, rtol=F32_ATOL)

    normed = normalize_shape_condition(cond, (8, 8))
    resized = torch.nn.functional.interpolate(cond, size=(8, 8), mode="bilinear", align_corners=False)
    expected = resized / resized.flatten(1).std(dim=1, correction=0)[:, None, None, None]
    torch.testing.assert_close(normed, expected, atol=F32_ATOL, rtol=F32_ATOL)
    assert normed.mean() > 0.1  # mean kept


def test_zero_shape_condition_gives_zero_map_with_finite_gradient():
    cond = torch.zeros(2, 3, 16, 16, requires_grad=True)
    out = normalize_shape_condition(cond, (4, 4))
    out.sum().backward()
    assert torch.all(out == 0) and torch.isfinite(cond.grad).all()


# ----------------------------------------------------------------------------- noise / output
def test_noise_modes():
    noise = NoiseInjection(8)
    with torch.no_grad():
        noise.strength.fill_(0.5)
    x = torch.zeros(3, 4, 8, 8)
    assert torch.equal(noise(x, "none"), x)
    c1, c2 = noise(x, "const"), noise(x, "const")
    assert torch.equal(c1, c2) and torch.equal(c1[0, 0], 0.5 * noise.noise_const)
    r1, r2 = noise(x, "random"), noise(x, "random")
    assert not torch.equal(r1, r2) and torch.equal(r1[:, 0], r1[:, 3])  # one noise image per sample
    assert "noise_const" in dict(noise.named_buffers())


@pytest.mark.parametrize("batch", [1, 3])
def test_to_output_shapes(batch):
    layer = ToOutput(16, 14, 40)
    assert layer(torch.randn(batch, 16, 8, 8), torch.randn(batch, 40)).shape == (batch, 14, 8, 8)
    assert not layer.conv.demodulate


# ----------------------------------------------------------------------------- synthesis
@pytest.mark.parametrize("batch", [1, 3])
def test_synthesis_block_shapes(batch):
    first = SynthesisBlock(0, 32, 24, 4, 5, is_first=True, cond_channels=3)
    styles = torch.randn(batch, first.num_styles, 24)
    cond = torch.randn(batch, 3, 32, 32)
    x, img = first(None, None, styles, cond)
    assert x.shape == (batch, 32, 4, 4) and img.shape == (batch, 5, 4, 4) and first.num_styles == 2
    block = SynthesisBlock(32, 16, 24, 8, 5, cond_channels=3)
    x, img = block(x, img, torch.randn(batch, block.num_styles, 24), cond)
    assert x.shape == (batch, 16, 8, 8) and img.shape == (batch, 5, 8, 8) and block.num_styles == 3


@pytest.mark.parametrize("batch", [1, 3])
def test_synthesis_network_shapes_and_tap(batch):
    net = SynthesisNetwork(24, 32, 6, cond_channels=3, tap_resolution=16, **SMALL)
    assert net.num_ws == 2 * int(math.log2(32)) - 2 == 8
    ws = torch.randn(batch, net.num_ws, 24, requires_grad=True)
    cond = torch.randn(batch, 3, 64, 64)
    tap = net.forward_with_tap(ws, cond, noise_mode="const")
    assert tap.image.shape == (batch, 6, 32, 32)
    assert tap.features.shape == (batch, 16, 16, 16) and tap.skip_image.shape == (batch, 6, 16, 16)
    torch.testing.assert_close(net(ws, cond, noise_mode="const"), tap.image)
    tap.features.sum().backward()  # the tap is not detached
    # ws 0..4 drive the convs up to 16² (ToOutput styles and later blocks do not touch the features)
    assert ws.grad[:, :5].abs().amin(dim=-1).gt(0).all() and ws.grad[:, 5:].abs().sum() == 0


def test_synthesis_tail_skip_image_is_added_upsampled():
    tail = SynthesisTail(8, 32, 16, 40, 5, **SMALL)
    assert tail.num_ws == 5
    x, img = torch.randn(3, 16, 8, 8), torch.randn(3, 5, 8, 8)
    styles = torch.randn(3, tail.num_ws, 40)
    with_img = tail(x, img, styles, noise_mode="const")
    without = tail(x, None, styles, noise_mode="const")
    assert with_img.shape == (3, 5, 32, 32)
    torch.testing.assert_close(with_img - without, upsample2d(upsample2d(img)), atol=F32_ATOL, rtol=F32_ATOL)


def test_deformation_tail_trains_through_identity_tap():
    """AGORA sec. 3.4: the deformation branch starts from the identity 64² features, not detached."""
    ident = SynthesisNetwork(24, 32, 5, tap_resolution=8, **SMALL)
    tail = SynthesisTail(8, 32, 32, 24 + 7, 5, **SMALL)
    ws = torch.randn(2, ident.num_ws, 24)
    tap = ident.forward_with_tap(ws, noise_mode="none")
    styles = torch.cat([ws[:, : tail.num_ws], torch.randn(2, tail.num_ws, 7)], dim=2)  # [w, MLP(e)]
    tail(tap.features, tap.skip_image, styles, noise_mode="none").square().mean().backward()
    assert ident.blocks["b4"].const.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- mapping
def test_mapping_shapes_w_avg_and_truncation():
    net = MappingNetwork(16, 25, 32, num_ws=6, num_layers=2)
    z, c = torch.randn(3, 16), torch.randn(3, 25)
    net.eval()
    ws = net(z, c)
    assert ws.shape == (3, 6, 32) and torch.equal(ws[:, 0], ws[:, 5])
    assert torch.all(net.w_avg == 0)  # eval: not updated
    net.train()
    w_train = net(z, c)[:, 0]
    torch.testing.assert_close(net.w_avg, (1 - 0.998) * w_train.mean(0))
    net.eval()
    avg = net.w_avg.clone()
    torch.testing.assert_close(net(z, c, truncation_psi=0.0), avg.expand(3, 6, 32))
    half = net(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], avg.lerp(ws[:, :2], 0.5))
    torch.testing.assert_close(half[:, 2:], ws[:, 2:])
    assert torch.equal(net.w_avg, avg)


def test_mapping_without_label_and_without_latent():
    assert MappingNetwork(16, 0, 32, num_ws=3, num_layers=2)(torch.randn(1, 16), None).shape == (1, 3, 32)
    label_only = MappingNetwork(0, 25, 32, num_ws=None, w_avg_beta=None)
    assert label_only(None, torch.randn(3, 25)).shape == (3, 32)
    assert all(layer.lr_mul == 0.01 for layer in label_only.layers) and label_only.embed.lr_mul == 1


# ----------------------------------------------------------------------------- discriminator
@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("batch", [1, 3])
def test_discriminator_logits_and_r1_gradient(resolution, batch):
    disc = Discriminator(6, resolution, c_dim=25, channel_base=1024, channel_max=64, mapping_layers=2)
    img = torch.randn(batch, 6, resolution, resolution, requires_grad=True)
    logits = disc(img, torch.randn(batch, 25))
    assert logits.shape == (batch, 1)
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)  # R1 penalty needs this
    assert grad.shape == img.shape and grad.abs().sum() > 0
    grad.square().sum().backward()  # double backward into D's weights
    assert disc.from_image.weight.grad.abs().sum() > 0


def test_discriminator_unconditional_and_smallest_resolution():
    disc = Discriminator(3, 8, c_dim=0, channel_base=256, channel_max=16)
    assert disc(torch.randn(5, 3, 8, 8)).shape == (5, 1) and disc.mapping is None


def _minibatch_std_loop(x, g):
    """Slow twin of minibatch_std for num_channels=1: group j = {j, j + B/g, …}."""
    b = x.shape[0]
    stats = torch.empty(b, dtype=x.dtype)
    for i in range(b):
        members = x[i % (b // g) :: b // g]
        stats[i] = torch.sqrt(members.var(dim=0, correction=0) + 1e-8).mean()
    return stats


@pytest.mark.parametrize("batch,expected_group", [(8, 4), (3, 3), (6, 3), (5, 1), (1, 1)])
def test_minibatch_std_group_handling(batch, expected_group):
    x = torch.randn(batch, 8, 4, 4, dtype=torch.float64)
    y = minibatch_std(x, group_size=4, num_channels=1)
    assert y.shape == (batch, 9, 4, 4) and torch.equal(y[:, :8], x)
    expected = _minibatch_std_loop(x, expected_group).to(y.dtype)
    torch.testing.assert_close(y[:, 8, 0, 0], expected, atol=F64_ATOL, rtol=0)
    assert minibatch_std(x, 4, num_channels=2).shape == (batch, 10, 4, 4)


# ----------------------------------------------------------------------------- ONNX
class _DeformationLike(nn.Module):
    """A conditioned modulated conv feeding a SynthesisTail: the ops a deformation-branch export uses."""

    def __init__(self):
        super().__init__()
        self.cond_conv = ModulatedConv(16, 16, 24, cond_channels=3)
        self.tail = SynthesisTail(8, 32, 16, 24, 5, **SMALL)
        for name, p in self.named_parameters():
            if name.endswith("strength"):
                nn.init.constant_(p, 0.3)  # exercise the const-noise buffers

    def forward(self, x, img, styles, cond):
        x = self.cond_conv(x, styles[:, 0], cond)
        return self.tail(x, img, styles, noise_mode="const")


# The tracer warns about every shape assert (a Python bool); they only check, they carry no data.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_onnx_export_dynamic_batch_matches_onnxruntime(tmp_path):
    model = _DeformationLike().eval()

    def inputs(b):
        return (torch.randn(b, 16, 8, 8), torch.randn(b, 5, 8, 8), torch.randn(b, 5, 24), torch.randn(b, 3, 32, 32))

    path = tmp_path / "tail.onnx"
    names = ["x", "img", "styles", "cond"]
    torch.onnx.export(model, inputs(2), str(path), dynamo=False, opset_version=17, input_names=names,
                      output_names=["out"], dynamic_axes={n: {0: "batch"} for n in names + ["out"]})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        args = inputs(batch)
        with torch.no_grad():
            expected = model(*args).numpy()
        (got,) = session.run(None, {n: a.numpy() for n, a in zip(names, args)})
        assert got.shape == (batch, 5, 32, 32)
        assert abs(got - expected).max() < 1e-4


# ----------------------------------------------------------------------------- paper sizes
def test_paper_parameter_counts():
    """Appendix 0.B.1.2: identity branch ~30M, deformation branch ~3M parameters."""
    mapping = MappingNetwork(512, 25, 512, num_ws=14, num_layers=2)
    counts = {}
    for name, out_channels in (("sh0", 14), ("sh1", 23)):
        synthesis = SynthesisNetwork(512, 256, out_channels, cond_channels=3, tap_resolution=64)
        counts[f"identity_{name}"] = count_parameters(mapping) + count_parameters(synthesis)
    counts["mapping"] = count_parameters(mapping)
    counts["deformation_style1024"] = count_parameters(SynthesisTail(64, 256, 512, 1024, 10))
    counts["deformation_style512"] = count_parameters(SynthesisTail(64, 256, 512, 512, 10))
    print("\nparameter counts (channel_base 32768, channel_max 512):", counts)
    assert 27e6 < counts["identity_sh0"] < 31e6 and 27e6 < counts["identity_sh1"] < 31e6
    assert 3.5e6 < counts["deformation_style1024"] < 4.0e6
    assert 2.8e6 < counts["deformation_style512"] < 3.2e6
