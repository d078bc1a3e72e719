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
restores G, D and both optimisers from the last in-memory snapshot. Checkpoints, sample grids (at
`sample_resolution`, enlarged from the training resolution) and SWD are written by rank 0 at their
kimg intervals; a run folder with checkpoints is resumed where it stopped. At the normal end every
rank meets at a barrier before the process group is torn down.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from agora_core.data.conditions import ConditionSampler
from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.errors import AgoraError
from agora_core.head.build import build_head, check_head_matches, pin_head_paths
from agora_core.inference.checkpoint import CHECKPOINT_DIR, checkpoint_name, latest_checkpoint, load_checkpoint
from agora_core.metrics.swd import evaluate_swd, swd_reference
from agora_core.render import Camera, rasterize
from agora_core.run_config import TrainConfig, config_to_dict, write_config
from agora_core.train.build import CueRenderer, build_models, build_optimizers
from agora_core.train.checkpoint import load_matching_weights, prune_checkpoints, save_checkpoint
from agora_core.train.distributed import DistInfo, all_gather_objects, any_true, init_distributed, shutdown_distributed
from agora_core.train.evaluation import sample_grid_inputs, sampling_defaults, save_sample_grid
from agora_core.train.losses import (
    discriminator_loss_fake, discriminator_loss_real, generator_loss, r1_penalty, regularizer_loss, shift_augment,
)
from agora_core.train.monitor import Monitor
from agora_core.train.sampling import CueCache, EndlessShardedSampler

MAX_CONSECUTIVE_NONFINITE = 10  # then the run has diverged: stop with an error


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


def _train(config: TrainConfig, data_root: Path, run_dir: Path, resume: bool, progress: bool, info: DistInfo) -> Path:
    dev, loss_cfg = info.device, config.loss
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
    opt_G, opt_D = build_optimizers(config.optim, loss_cfg.r1_interval, G, D)
    conditions = ConditionSampler(dataset.index, config.xflip, seed=config.seed + 1337 + info.rank)
    cue = CueCache(CueRenderer(head.to(dev), G.samples, config), conditions, config.resolution,
                   loss_cfg.cue_cache_mb if D.uses_cue else 0, dev)
    torch.manual_seed(config.seed * 7919 + info.rank)  # the training stream differs per rank
    step, nimg = _resume_or_init(config, run_dir, resume, info, head.model_id, G, G_ema, D, opt_G, opt_D, conditions)

    loader = DataLoader(dataset, batch_size=local_batch, drop_last=True, num_workers=config.num_workers,
                        sampler=EndlessShardedSampler(len(dataset), config.seed, info.rank, info.world_size,
                                                      start=step * local_batch),
                        generator=torch.Generator().manual_seed(config.seed),  # leave the global RNG alone
                        persistent_workers=config.num_workers > 0, pin_memory=dev.type == "cuda")
    G_ddp, D_ddp = (_ddp(G), _ddp(D)) if info.enabled else (G, D)
    monitor = Monitor(run_dir, config.total_kimg, enabled=info.is_main, progress=progress)
    if info.is_main:
        write_config(config, run_dir / "config.yaml")
        grid_inputs = sample_grid_inputs(conditions, config.generator.z_dim, config.sample_expressions,
                                         config.sample_identities, seed=config.seed + 1)
        swd_ref = swd_reference(dataset, conditions, config.generator.z_dim, config.metric_images,
                                seed=config.seed + 2) if config.metric_kimg > 0 else None
    sampling = sampling_defaults(conditions)  # what `agora sample` draws avatars with
    monitor.event("start", nimg, step=step, world_size=info.world_size, device=str(dev),
                  gaussians=G.num_gaussians, resumed=nimg > 0, cue_cache=cue.enabled)
    snapshot = _snapshot(G, D, opt_G, opt_D)
    bad_in_a_row = 0
    total_nimg = round(config.total_kimg * 1000)
    monitor.start_tick(nimg)
    real_batches = iter(loader)

    done = {"sample": -1, "swd": -1, "checkpoint": nimg if nimg > 0 else -1}  # nimg of the last of each

    def periodic(prev: int, cur: int, final: bool = False) -> None:
        """Sample grid, SWD (rank 0) and checkpoint (all ranks gather RNG states) when due."""
        def due(what: str, every_kimg: float) -> bool:
            return done[what] != cur and (final or _crossed(prev, cur, every_kimg))

        if info.is_main and due("sample", config.sample_kimg):
            save_sample_grid(G_ema, grid_inputs, config.resolution,
                             run_dir / "samples" / checkpoint_name(cur).replace(".pt", ".png"),
                             display_resolution=config.sample_resolution or config.resolution)
            done["sample"] = cur
        if info.is_main and swd_ref is not None and due("swd", config.metric_kimg):
            monitor.event("swd", cur, step=step, **evaluate_swd(G_ema, swd_ref, config.resolution, config.swd_descriptors,
                                                                config.swd_directions, seed=config.seed))
            done["swd"] = cur
        if cur > 0 and due("checkpoint", config.checkpoint_kimg):
            rng = all_gather_objects(_rng_state(dev, conditions), info)  # every rank's random stream
            done["checkpoint"] = cur
            if info.is_main:
                path = save_checkpoint(run_dir / CHECKPOINT_DIR / checkpoint_name(cur), {
                    "G": G.state_dict(), "G_ema": G_ema.state_dict(), "D": D.state_dict(),
                    "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(), "step": step, "nimg": cur,
                    "kimg": cur / 1000, "rng": rng, "world_size": info.world_size,
                    "config": config_to_dict(config), "head_model": head.model_id, "sampling": sampling})
                prune_checkpoints(run_dir, config.keep_checkpoints)
                monitor.event("checkpoint", cur, step=step, path=str(path))

    if nimg == 0:
        periodic(-1, 0)  # the sample grid and SWD before training
    while nimg < total_nimg:
        batch = next(real_batches)
        real = batch["image"].to(dev, non_blocking=True) * 2 - 1
        real_c = batch["camera"].to(dev)
        real_flame = {k: batch[k].to(dev) for k in ("shape", "expression", "jaw", "neck", "eyes", "eyelids")}
        real_rows = conditions.rows_of(batch)
        dual_on = nimg >= loss_cfg.start_dual_kimg * 1000

        # --- G step: non-saturating loss + weighted regularisers (sec. 3.8) -----------------------
        z = torch.randn(local_batch, config.generator.z_dim, device=dev)
        gen_rows = conditions.sample_rows(local_batch)
        gen_c, gen_flame = conditions.take(gen_rows, dev)
        D.requires_grad_(False)
        out = G_ddp(z, gen_c, gen_flame)
        fake, _ = rasterize(out.gaussians, Camera.from_label(gen_c), config.resolution, config.resolution,
                            background=1.0)
        fake = fake * 2 - 1
        fake_cue = cue(gen_rows, gen_flame, gen_c, dual_on)
        loss_G = generator_loss(D(*shift_augment(fake, fake_cue, config.shift_augmentation), gen_c, gen_flame))
        loss_reg, reg_log = regularizer_loss(out.regularizers, loss_cfg)
        if not _all_finite([loss_G, loss_reg], info):
            bad_in_a_row = _recover(snapshot, G, D, opt_G, opt_D, monitor, nimg, step, "G", bad_in_a_row)
            nimg, step = nimg + config.batch_size, step + 1
            continue
        opt_G.zero_grad(set_to_none=True)
        (loss_G + loss_reg).backward()
        opt_G.step()
        D.requires_grad_(True)

        # --- D step: fakes (detached), reals, lazy R1 on the real image and cue ------------------
        opt_D.zero_grad(set_to_none=True)
        with D_ddp.no_sync() if info.enabled else contextlib.nullcontext():  # sync once, after the reals
            logits_fake = D_ddp(*shift_augment(fake.detach(), fake_cue, config.shift_augmentation), gen_c, gen_flame)
            loss_D_fake = discriminator_loss_fake(logits_fake)
            fake_ok = _all_finite([loss_D_fake], info)
            if fake_ok:
                loss_D_fake.backward()
        do_r1 = loss_cfg.r1_gamma > 0 and step % loss_cfg.r1_interval == 0
        real_cue = cue(real_rows, real_flame, real_c, dual_on)
        real_in = real.detach().requires_grad_(do_r1)
        cue_in = None if real_cue is None else real_cue.detach().requires_grad_(do_r1)
        logits_real = D_ddp(*shift_augment(real_in, cue_in, config.shift_augmentation), real_c, real_flame)
        loss_D_real = discriminator_loss_real(logits_real)
        r1 = r1_penalty(logits_real, [real_in, cue_in]) if do_r1 else torch.zeros((), device=dev)
        loss_D_real_total = loss_D_real + r1 * (loss_cfg.r1_gamma / 2 * loss_cfg.r1_interval)
        if not (fake_ok and _all_finite([loss_D_real_total], info)):
            bad_in_a_row = _recover(snapshot, G, D, opt_G, opt_D, monitor, nimg, step, "D", bad_in_a_row)
            nimg, step = nimg + config.batch_size, step + 1
            continue
        loss_D_real_total.backward()
        opt_D.step()

        # --- EMA, bookkeeping, periodic work -----------------------------------------------------
        _update_ema(G_ema, G, nimg, config)
        prev, nimg, step, bad_in_a_row = nimg, nimg + config.batch_size, step + 1, 0
        if step % config.snapshot_steps == 0:
            snapshot = _snapshot(G, D, opt_G, opt_D)
        monitor.accumulate({"loss_G": loss_G.item(), "loss_D": (loss_D_fake + loss_D_real).item(),
                            "loss_reg": float(loss_reg.detach()), **reg_log, **({"r1": r1.item()} if do_r1 else {})})
        if _crossed(prev, nimg, config.log_kimg):
            monitor.tick(nimg, step)
        periodic(prev, nimg, final=False)
    if monitor.count:
        monitor.tick(nimg, step)
    periodic(nimg, nimg, final=True)
    monitor.close()
    return latest_checkpoint(run_dir) or run_dir


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


def _snapshot(G, D, opt_G, opt_D) -> dict:
    """In-memory copy of everything a non-finite step could have damaged."""
    return copy.deepcopy({"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                          "opt_D": opt_D.state_dict()})


def _recover(snapshot, G, D, opt_G, opt_D, monitor: Monitor, nimg: int, step: int, phase: str, bad_in_a_row: int) -> int:
    """Restore from the snapshot after a non-finite loss; warn; count consecutive failures."""
    G.load_state_dict(snapshot["G"])
    D.load_state_dict(snapshot["D"])
    opt_G.load_state_dict(snapshot["opt_G"])
    opt_D.load_state_dict(snapshot["opt_D"])
    opt_G.zero_grad(set_to_none=True)
    opt_D.zero_grad(set_to_none=True)
    D.requires_grad_(True)
    monitor.warn(f"non-finite {phase} loss at step {step} (kimg {nimg / 1000:.3f}): step skipped, "
                 "G/D/optimisers restored from the last good snapshot")
    monitor.event("nonfinite", nimg, step=step, phase=phase)
    if bad_in_a_row + 1 >= MAX_CONSECUTIVE_NONFINITE:
        raise AgoraError(f"training diverged: {MAX_CONSECUTIVE_NONFINITE} non-finite steps in a row at kimg "
                         f"{nimg / 1000:.3f}; lower optim.lr_g/lr_d or raise loss.r1_gamma")
    return bad_in_a_row + 1


def _rng_state(device: torch.device, conditions: ConditionSampler) -> dict:
    state = {"cpu": torch.get_rng_state(), "conditions": conditions.state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _resume_or_init(config, run_dir, resume, info, head_model, G, G_ema, D, opt_G, opt_D, conditions) -> tuple[int, int]:
    """Continue from the run's newest checkpoint, or start (optionally from `resume_from` weights).

    Returns (step, nimg)."""
    latest = latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise AgoraError(f"{run_dir / CHECKPOINT_DIR}: holds checkpoints of an earlier run; resume it "
                         "(--resume) or choose another --out")
    if latest is None:
        if config.resume_from:  # stage 2 from stage 1: copy every tensor whose name and shape match
            try:
                state = load_checkpoint(config.resume_from, map_location=info.device)
            except AgoraError as exc:
                raise AgoraError(f"resume_from: {exc}") from None
            for name, module in (("G", G), ("G_ema", G_ema), ("D", D)):
                copied, kept = load_matching_weights(module, state[name])
                if info.is_main:
                    print(f"resume_from {name}: {copied} tensors copied, {len(kept)} kept as initialised")
        return 0, 0
    state = load_checkpoint(latest, map_location=info.device)
    stored = state["config"]
    for section in ("generator", "discriminator", "resolution"):
        if stored.get(section) != config_to_dict(getattr(config, section)):
            raise AgoraError(f"{latest}: was trained with a different '{section}' config; resume with the "
                             f"config in {run_dir / 'config.yaml'} or choose another --out")
    if state["head_model"] != head_model:
        raise AgoraError(f"{latest}: was trained on head model '{state['head_model']}', the config builds "
                         f"'{head_model}'; set head.* as in {run_dir / 'config.yaml'}")
    G.load_state_dict(state["G"])
    G_ema.load_state_dict(state["G_ema"])
    D.load_state_dict(state["D"])
    opt_G.load_state_dict(state["opt_G"])
    opt_D.load_state_dict(state["opt_D"])
    rng = state.get("rng") or []
    if state.get("world_size") == info.world_size and len(rng) == info.world_size:
        mine = rng[info.rank]
        torch.set_rng_state(mine["cpu"].cpu())
        conditions.set_state(mine["conditions"])
        if "cuda" in mine and info.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"].cpu(), info.device)
    else:  # a different number of processes: fresh, but reproducible, streams
        torch.manual_seed(config.seed * 7919 + info.rank + state["step"] * 104729)
    return int(state["step"]), int(state["nimg"])
