"""Losses, R1, regulariser weighting, shift augmentation, checkpoints, samplers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from agora_core.errors import AgoraError
from agora_core.inference.checkpoint import checkpoint_name, latest_checkpoint, list_checkpoints, load_checkpoint
from agora_core.train.checkpoint import load_matching_weights, prune_checkpoints, save_checkpoint
from agora_core.run_config import LossConfig, ShiftAugmentConfig
from agora_core.train.losses import (
    apply_affine,
    discriminator_loss,
    generator_loss,
    r1_penalty,
    regularizer_loss,
    shift_augment,
)
from agora_core.train.sampling import EndlessShardedSampler


def test_gan_losses_are_the_softplus_forms():
    logits = torch.tensor([[-2.0], [0.0], [3.0]])
    assert generator_loss(logits).item() == pytest.approx(sum(math.log1p(math.exp(-x)) for x in (-2, 0, 3)) / 3)
    real, fake = torch.tensor([[1.0], [2.0]]), torch.tensor([[-1.0], [0.5]])
    expected = F.softplus(fake).mean() + F.softplus(-real).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item())


def test_r1_is_the_squared_input_gradient_of_both_inputs():
    """For D(x, y) = Σ a·x + Σ b·y the input gradients are a and b: R1 = ‖a‖² + ‖b‖² exactly."""
    a, b = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = ((x * a).sum(dim=(1, 2, 3)) + (y * b).sum(dim=(1, 2, 3)))[:, None]
    penalty = r1_penalty(logits, [x, y, None])
    torch.testing.assert_close(penalty, a.square().sum() + b.square().sum())
    assert penalty.requires_grad is False or penalty.grad_fn is not None  # graph kept for D's update


def test_regularizers_are_weighted_by_lambda_and_zero_weights_skipped():
    regs = {"position": torch.tensor(2.0), "scale": torch.tensor(4.0), "deform_position": torch.tensor(1.0),
            "deform_scale": torch.tensor(1.0), "opacity_beta": torch.tensor(float("nan"))}
    total, logged = regularizer_loss(regs, LossConfig(lambda_opacity=0.0))
    assert total.item() == pytest.approx(0.25 * 2 + 0.5 * 4 + 1.5 + 1.5)  # the NaN term has λ = 0: skipped
    assert logged["reg_scale"] == 4.0
    with pytest.raises(AssertionError, match="without a λ"):
        regularizer_loss({"colour": torch.tensor(1.0)}, LossConfig())


def test_shift_augment_moves_image_and_cue_together_with_their_fills():
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.manual_seed(3)
    cue = img - 1.0  # the cue's offset from its fill (0) equals the image's from its fill (1)
    aug = ShiftAugmentConfig(translate=0.1, scale=(0.85, 0.86))  # shrinks: borders get the fills
    out_img, out_cue = shift_augment(img, cue, aug)
    assert torch.allclose(out_img[:, :, 0, 0], torch.ones(2, 3))  # white fill for RGB
    assert torch.allclose(out_cue[:, :, 0, 0], torch.zeros(2, 3))  # zero fill for the cue
    torch.testing.assert_close(out_img - 1.0, out_cue)  # one transform for image and cue
    assert not torch.allclose(out_img, img)
    torch.manual_seed(3)
    first, _ = shift_augment(img[:1], None, aug)  # the same draw for one image as for the batch
    torch.testing.assert_close(first, out_img[:1])
    same_img, same_cue = shift_augment(img, cue, ShiftAugmentConfig(enabled=False))
    assert same_img is img and same_cue is cue


def test_nearest_shift_augment_moves_pixels_without_blending_them():
    """The default warp (nearest, as the authors' torchvision RandomAffine) only moves pixels, so D
    sees the images' finest detail; the bilinear one blends neighbours, a low-pass."""
    img = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    torch.manual_seed(5)
    out, _ = shift_augment(img, None, ShiftAugmentConfig())
    assert ShiftAugmentConfig().interpolation == "nearest"
    values = torch.cat([img.detach().flatten(), torch.ones(1)])
    assert torch.isin(out.detach(), values).all()  # every pixel is an input pixel or the white fill
    out.sum().backward()
    assert img.grad.abs().sum() > 0  # D's gradient still reaches the image (the generator)
    torch.manual_seed(5)
    blended, _ = shift_augment(img.detach(), None, ShiftAugmentConfig(interpolation="bilinear"))
    assert not torch.isin(blended, values).all()


def test_apply_affine_identity_is_exact_and_gradients_flow():
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    y = apply_affine(x, theta, fill=1.0)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_checkpoint_round_trip_weights_only_latest_and_prune(tmp_path: Path):
    run = tmp_path / "run"
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), betas=(0.0, 0.99))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    for nimg in (4000, 8000, 8500, 12000):
        save_checkpoint(run / "checkpoints" / checkpoint_name(nimg), {
            "G": model.state_dict(), "opt_G": opt.state_dict(), "step": nimg // 4, "nimg": nimg,
            "rng": [{"cpu": torch.get_rng_state()}], "config": {"a": [1, 2], "b": {"c": "x"}}})
    assert checkpoint_name(8500) == "kimg000008.500.pt"
    assert [p.name for p in list_checkpoints(run)] == ["kimg000004.pt", "kimg000008.pt", "kimg000008.500.pt",
                                                       "kimg000012.pt"]
    latest = latest_checkpoint(run)
    state = torch.load(latest, weights_only=True)  # tensors and plain types only
    assert state["nimg"] == 12000 and state["format"] == "agora-train-checkpoint"
    assert torch.equal(state["G"]["weight"], model.weight)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(load_checkpoint(run)["opt_G"])  # a run folder means its newest checkpoint
    assert opt2.param_groups[0]["betas"] == (0.0, 0.99)
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert [p.name for p in prune_checkpoints(run, keep=2)] == ["kimg000004.pt", "kimg000008.pt"]
    assert len(list_checkpoints(run)) == 2
    with pytest.raises(AgoraError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AgoraError, match="not a readable agora checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_load_matching_weights_copies_only_same_name_and_shape():
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    dst = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 5))
    copied, kept = load_matching_weights(dst, src.state_dict())
    assert copied == 2 and kept == ["1.bias", "1.weight"]
    assert torch.equal(dst[0].weight, src[0].weight)


def test_endless_sampler_shards_epochs_and_resumes_mid_stream():
    stream = lambda **kw: [i for _, i in zip(range(12), iter(EndlessShardedSampler(5, seed=1, **kw)))]  # noqa: E731
    single = stream()
    assert sorted(single[:5]) == list(range(5)) and sorted(single[5:10]) == list(range(5))
    r0, r1 = stream(rank=0, world_size=2), stream(rank=1, world_size=2)
    assert [x for pair in zip(r0, r1) for x in pair] == [i for _, i in zip(range(24), iter(EndlessShardedSampler(5, seed=1)))]
    assert stream(start=7) == [i for _, i in zip(range(19), iter(EndlessShardedSampler(5, seed=1)))][7:]
