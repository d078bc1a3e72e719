"""The AGORA training loop (paper sec. 3.8 and 4): one function over explicit G, D, optimisers, losses.

Per step (batch B split over the processes):
1. G step: z ~ N(0, I), (camera, FLAME) of random dataset items (sampled jointly, as the authors do);
   fake = rasterize(G(z, c, flame).gaussians, c) on white; D sees [fake, cue(flame, c)] after shift
   augmentation; loss = softplus(-D) + Σ λ·regularisers.
2. D step on the same fakes (detached; StyleGAN2-ADA draws fresh ones — reusing them halves the
   generator + rasteriser work, which dominates on a CPU) and a real batch with its own cue;
   every `r1_interval` steps R1 on the real image and cue, ×interval (lazy regularisation).
3. G_ema ← EMA of G (half-life `ema_kimg`, ramp-up `ema_rampup`).
The cue is all zeros before `start_dual_kimg`; after it, each dataset row's cue is rendered once and
kept (`CueCache`, when all rows fit `loss.cue_cache_mb`). A non-finite loss skips the step and
restores G, D and both optimisers from the last in-memory snapshot (`state.recover`). Checkpoints,
sample grids (at `sample_resolution`, enlarged from the training resolution) and SWD are written by
rank 0 at their kimg intervals (`periodic_work`); a run folder with checkpoints is resumed where it
stopped (`state.resume_or_init`). At the normal end every rank meets at a barrier before the process
group is torn down.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from agora_core.data.conditions import ConditionSampler
from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.errors import AgoraError
from agora_core.head import FlameParams
from agora_core.head.build import build_head, check_head_matches, pin_head_paths
from agora_core.inference.checkpoint import CHECKPOINT_DIR, checkpoint_name, latest_checkpoint
from agora_core.metrics.swd import SWDReference, evaluate_swd, swd_reference
from agora_core.render import Camera, rasterize
from agora_core.run_config import TrainConfig, config_to_dict, write_config
from agora_core.train.build import CueRenderer, build_models, build_optimizers
from agora_core.train.checkpoint import prune_checkpoints, save_checkpoint
from agora_core.train.distributed import DistInfo, all_gather_objects, any_true, init_distributed, shutdown_distributed
from agora_core.train.evaluation import SampleGridInputs, sample_grid_inputs, sampling_defaults, save_sample_grid
from agora_core.train.losses import (
    discriminator_loss_fake, discriminator_loss_real, generator_loss, r1_penalty, regularizer_loss, shift_augment,
)
from agora_core.train.monitor import Monitor
from agora_core.train.sampling import CueCache, EndlessShardedSampler
from agora_core.train.state import TrainingState, recover, resume_or_init, rng_state


def train(config: TrainConfig, data_root: str | Path, run_dir: str | Path, *, resume: bool = True,
          progress: bool = True, device: str = "auto") -> Path:
    """Train G and D on the dataset at `data_root`, writing into `run_dir`; returns the last checkpoint.

    Under torchrun (WORLD_SIZE > 1) each process trains its share of the batch with DDP.
    """
    info = init_distributed(device)
    finished = False
    try:
        last = _train(config, Path(data_root), Path(run_dir), resume, progress, info)
        finished = True
        return last
    finally:
        shutdown_distributed(info, wait_for_all=finished)


@dataclass
class Run:
    """What a run trains with besides its `TrainingState`: config, processes, folder, conditions, the
    fixed inputs of its outputs, and when each periodic output was last written."""

    config: TrainConfig  # resolved, head paths pinned (what RUN/config.yaml and checkpoints store)
    info: DistInfo
    run_dir: Path
    conditions: ConditionSampler  # generator conditions (and the rows of real batches)
    cue: CueCache
    monitor: Monitor
    head_model: str
    sampling: dict[str, Tensor]  # stored in checkpoints: what `agora sample` draws avatars with
    grid_inputs: SampleGridInputs | None  # fixed inputs of the sample grids (rank 0)
    swd_ref: SWDReference | None  # fixed reals and inputs of SWD (rank 0, metric_kimg > 0)
    done: dict[str, int] = field(default_factory=dict)  # nimg of the last sample grid, SWD, checkpoint

    @property
    def local_batch(self) -> int:
        return self.config.batch_size // self.info.world_size


@dataclass
class GeneratorStep:
    """What the G step leaves for the D step and the log."""

    fake: Tensor  # [b, 3, R, R] in [-1, 1]
    cue: Tensor | None  # its dual-discrimination cue
    c: Tensor  # [b, 25] camera labels
    flame: FlameParams
    loss_G: Tensor
    loss_reg: Tensor
    reg_log: dict[str, float]


def _train(config: TrainConfig, data_root: Path, run_dir: Path, resume: bool, progress: bool, info: DistInfo) -> Path:
    dev = info.device
    if config.batch_size % info.world_size:
        raise AgoraError(f"batch_size {config.batch_size} is not divisible by the {info.world_size} processes")
    local_batch = config.batch_size // info.world_size
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    dataset = HeadImageDataset(data_root, xflip=config.xflip, resolution=config.resolution)
    config = dataclasses.replace(config, head=pin_head_paths(config.head))  # stored as resolved
    head = build_head(config.head)
    check_head_matches(dataset.index.header.head_model, head, data_root)
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    G, D = build_models(config, head)
    G, D = G.to(dev).train(), D.to(dev).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    state = TrainingState(G, G_ema, D, *build_optimizers(config.optim, config.loss.r1_interval, G, D))
    conditions = ConditionSampler(dataset.index, config.xflip, seed=config.seed + 1337 + info.rank)
    cue = CueCache(CueRenderer(head.to(dev), G.samples, config), conditions, config.resolution,
                   config.loss.cue_cache_mb if D.uses_cue else 0, dev)
    torch.manual_seed(config.seed * 7919 + info.rank)  # the training stream differs per rank
    resume_or_init(state, config, run_dir, resume, info, head.model_id, conditions)

    loader = DataLoader(dataset, batch_size=local_batch, drop_last=True, num_workers=config.num_workers,
                        sampler=EndlessShardedSampler(len(dataset), config.seed, info.rank, info.world_size,
                                                      start=state.step * local_batch),
                        generator=torch.Generator().manual_seed(config.seed),  # leave the global RNG alone
                        persistent_workers=config.num_workers > 0, pin_memory=dev.type == "cuda")
    G_ddp, D_ddp = (_ddp(G), _ddp(D)) if info.enabled else (G, D)
    monitor = Monitor(run_dir, config.total_kimg, enabled=info.is_main, progress=progress)
    grid_inputs = swd_ref = None
    if info.is_main:
        write_config(config, run_dir / "config.yaml")
        grid_inputs = sample_grid_inputs(conditions, config.generator.z_dim, config.sample_expressions,
                                         config.sample_identities, seed=config.seed + 1)
        swd_ref = swd_reference(dataset, conditions, config.generator.z_dim, config.metric_images,
                                seed=config.seed + 2) if config.metric_kimg > 0 else None
    run = Run(config, info, run_dir, conditions, cue, monitor, head.model_id, sampling_defaults(conditions),
              grid_inputs, swd_ref, {"sample": -1, "swd": -1, "checkpoint": state.nimg if state.nimg > 0 else -1})
    monitor.event("start", state.nimg, step=state.step, world_size=info.world_size, device=str(dev),
                  gaussians=G.num_gaussians, resumed=state.nimg > 0, cue_cache=cue.enabled)
    snapshot = state.snapshot()
    bad_in_a_row = 0
    total_nimg = round(config.total_kimg * 1000)
    monitor.start_tick(state.nimg)
    real_batches = iter(loader)

    if state.nimg == 0:
        periodic_work(run, state, prev=-1)  # the sample grid and SWD before training
    while state.nimg < total_nimg:
        batch = next(real_batches)
        dual_on = state.nimg >= config.loss.start_dual_kimg * 1000
        fakes = generator_step(run, state, G_ddp, dual_on)
        d_log = None if fakes is None else discriminator_step(run, state, D_ddp, fakes, batch, dual_on)
        if d_log is None:  # a non-finite loss: skip the step
            bad_in_a_row = recover(state, snapshot, monitor, "G" if fakes is None else "D", bad_in_a_row)
            state.advance(config.batch_size)
            continue
        _update_ema(G_ema, G, state.nimg, config)
        prev, bad_in_a_row = state.nimg, 0
        state.advance(config.batch_size)
        if state.step % config.snapshot_steps == 0:
            snapshot = state.snapshot()
        monitor.accumulate({"loss_G": fakes.loss_G.item(), "loss_D": d_log.pop("loss_D"),
                            "loss_reg": float(fakes.loss_reg.detach()), **fakes.reg_log, **d_log})
        if _crossed(prev, state.nimg, config.log_kimg):
            monitor.tick(state.nimg, state.step)
        periodic_work(run, state, prev)
    if monitor.count:
        monitor.tick(state.nimg, state.step)
    periodic_work(run, state, prev=state.nimg, final=True)
    monitor.close()
    return latest_checkpoint(run_dir) or run_dir


def generator_step(run: Run, state: TrainingState, G_ddp: torch.nn.Module, dual_on: bool) -> GeneratorStep | None:
    """Non-saturating loss + weighted regularisers (sec. 3.8) on fakes of random dataset conditions;
    G's optimiser steps. None (nothing stepped) when a loss is not finite on some process."""
    config, dev, D = run.config, run.info.device, state.D
    z = torch.randn(run.local_batch, config.generator.z_dim, device=dev)
    gen_rows = run.conditions.sample_rows(run.local_batch)
    gen_c, gen_flame = run.conditions.take(gen_rows, dev)
    D.requires_grad_(False)
    out = G_ddp(z, gen_c, gen_flame)
    fake, _ = rasterize(out.gaussians, Camera.from_label(gen_c), config.resolution, config.resolution,
                        background=1.0)
    fake = fake * 2 - 1
    fake_cue = run.cue(gen_rows, gen_flame, gen_c, dual_on)
    loss_G = generator_loss(D(*shift_augment(fake, fake_cue, config.shift_augmentation), gen_c, gen_flame))
    loss_reg, reg_log = regularizer_loss(out.regularizers, config.loss)
    if not _all_finite([loss_G, loss_reg], run.info):
        return None
    state.opt_G.zero_grad(set_to_none=True)
    (loss_G + loss_reg).backward()
    state.opt_G.step()
    D.requires_grad_(True)
    return GeneratorStep(fake, fake_cue, gen_c, gen_flame, loss_G, loss_reg, reg_log)


def discriminator_step(run: Run, state: TrainingState, D_ddp: torch.nn.Module, fakes: GeneratorStep,
                       batch: dict[str, Tensor], dual_on: bool) -> dict[str, float] | None:
    """D on the G step's fakes (detached) and a real batch, lazy R1 on the real image and cue; D's
    optimiser steps. Returns the log values ("loss_D", "r1" when R1 ran), or None (nothing stepped)
    when a loss is not finite on some process."""
    config, info, dev, loss_cfg = run.config, run.info, run.info.device, run.config.loss
    real = batch["image"].to(dev, non_blocking=True) * 2 - 1
    real_c = batch["camera"].to(dev)
    real_flame = FlameParams.from_dict(batch).to(dev)
    state.opt_D.zero_grad(set_to_none=True)
    with D_ddp.no_sync() if info.enabled else contextlib.nullcontext():  # sync once, after the reals
        logits_fake = D_ddp(*shift_augment(fakes.fake.detach(), fakes.cue, config.shift_augmentation), fakes.c,
                            fakes.flame)
        loss_D_fake = discriminator_loss_fake(logits_fake)
        fake_ok = _all_finite([loss_D_fake], info)
        if fake_ok:
            loss_D_fake.backward()
    do_r1 = loss_cfg.r1_gamma > 0 and state.step % loss_cfg.r1_interval == 0
    real_cue = run.cue(run.conditions.rows_of(batch), real_flame, real_c, dual_on)
    real_in = real.detach().requires_grad_(do_r1)
    cue_in = None if real_cue is None else real_cue.detach().requires_grad_(do_r1)
    logits_real = D_ddp(*shift_augment(real_in, cue_in, config.shift_augmentation), real_c, real_flame)
    loss_D_real = discriminator_loss_real(logits_real)
    r1 = r1_penalty(logits_real, [real_in, cue_in]) if do_r1 else torch.zeros((), device=dev)
    loss_D_real_total = loss_D_real + r1 * (loss_cfg.r1_gamma / 2 * loss_cfg.r1_interval)
    if not (fake_ok and _all_finite([loss_D_real_total], info)):
        return None
    loss_D_real_total.backward()
    state.opt_D.step()
    return {"loss_D": (loss_D_fake + loss_D_real).item(), **({"r1": r1.item()} if do_r1 else {})}


def periodic_work(run: Run, state: TrainingState, prev: int, final: bool = False) -> None:
    """Sample grid, SWD (rank 0) and checkpoint (all ranks gather RNG states) when one is due: a
    multiple of its kimg interval lies in (prev, nimg], or `final`; never twice at one nimg."""
    config, cur = run.config, state.nimg

    def due(what: str, every_kimg: float) -> bool:
        return run.done[what] != cur and (final or _crossed(prev, cur, every_kimg))

    if run.info.is_main and due("sample", config.sample_kimg):
        save_sample_grid(state.G_ema, run.grid_inputs, config.resolution,
                         run.run_dir / "samples" / checkpoint_name(cur).replace(".pt", ".png"),
                         display_resolution=config.sample_resolution or config.resolution)
        run.done["sample"] = cur
    if run.info.is_main and run.swd_ref is not None and due("swd", config.metric_kimg):
        run.monitor.event("swd", cur, step=state.step, **evaluate_swd(
            state.G_ema, run.swd_ref, config.resolution, config.swd_descriptors, config.swd_directions,
            seed=config.seed))
        run.done["swd"] = cur
    if cur > 0 and due("checkpoint", config.checkpoint_kimg):
        write_checkpoint(run, state)


def write_checkpoint(run: Run, state: TrainingState) -> None:
    """RUN/checkpoints/kimgNNNNNN[.NNN].pt of `state` with every process's random streams (rank 0
    writes it and prunes the oldest beyond `keep_checkpoints`)."""
    rng = all_gather_objects(rng_state(run.info.device, run.conditions), run.info)  # every rank's stream
    run.done["checkpoint"] = state.nimg
    if run.info.is_main:
        path = save_checkpoint(run.run_dir / CHECKPOINT_DIR / checkpoint_name(state.nimg), {
            **state.checkpoint_entries(), "rng": rng, "world_size": run.info.world_size,
            "config": config_to_dict(run.config), "head_model": run.head_model, "sampling": run.sampling})
        prune_checkpoints(run.run_dir, run.config.keep_checkpoints)
        run.monitor.event("checkpoint", state.nimg, step=state.step, path=str(path))


# --- small helpers ----------------------------------------------------------------------------------

def _crossed(prev_nimg: int, nimg: int, every_kimg: float) -> bool:
    """Whether a multiple of `every_kimg` lies in (prev_nimg, nimg] (never when every_kimg <= 0)."""
    if every_kimg <= 0:
        return False
    every = max(1, round(every_kimg * 1000))
    return nimg // every > prev_nimg // every if prev_nimg >= 0 else True


def _all_finite(losses: list[torch.Tensor], info: DistInfo) -> bool:
    """True when every loss is finite on every rank (so all ranks skip a bad step together)."""
    bad = not all(bool(torch.isfinite(x).all()) for x in losses)
    return not any_true(bad, info)


def _update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, nimg: int, config: TrainConfig) -> None:
    """G_ema ← β G_ema + (1 − β) G with β = 0.5^(B / half-life); half-life ≤ ramp-up × images seen."""
    half_life = config.ema_kimg * 1000
    if config.ema_rampup > 0:
        half_life = min(half_life, (nimg + config.batch_size) * config.ema_rampup)
    beta = 0.5 ** (config.batch_size / max(half_life, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        own, ema = G.state_dict(keep_vars=True), G_ema.state_dict(keep_vars=True)
        for name in own.keys() - dict(G.named_parameters()).keys():  # persistent buffers (w_avg, noise)
            ema[name].copy_(own[name])


def _ddp(module: torch.nn.Module) -> DDP:
    """DDP without per-forward buffer broadcasts: G's buffers (w_avg, noise, head tables) may stay
    rank-local after the initial sync, and re-sending the head model every step would be waste."""
    if "forward_sync_buffers" in inspect.signature(DDP).parameters:  # torch >= 2.14 spelling
        return DDP(module, forward_sync_buffers=False)
    return DDP(module, broadcast_buffers=False)
