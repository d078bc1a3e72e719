"""What a training run changes as it goes (`TrainingState`) and how it starts, resumes and recovers.

`TrainingState` is G, G_ema, D, both optimisers and the counters (optimiser steps, real images
shown); a checkpoint stores its entries (`checkpoint_entries`) next to the RNG states, the config and
the head model (the format: `inference.checkpoint`). `resume_or_init` continues from a run's newest
checkpoint (or copies `resume_from` weights); `recover` restores the last in-memory snapshot after
a non-finite loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from agora_core.data.conditions import ConditionSampler
from agora_core.errors import AgoraError
from agora_core.inference.checkpoint import CHECKPOINT_DIR, latest_checkpoint, load_checkpoint
from agora_core.run_config import TrainConfig, config_to_dict
from agora_core.train.checkpoint import load_matching_weights
from agora_core.train.distributed import DistInfo
from agora_core.train.monitor import Monitor

MAX_CONSECUTIVE_NONFINITE = 10  # then the run has diverged: stop with an error


@dataclass
class TrainingState:
    """The networks, their optimisers and how far training has come."""

    G: torch.nn.Module
    G_ema: torch.nn.Module  # EMA of G's weights (eval mode, no grad): what later stages use
    D: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step: int = 0  # optimiser steps, skipped non-finite ones included
    nimg: int = 0  # real images shown to D, all processes together

    def advance(self, batch_size: int) -> None:
        """One step of `batch_size` images is over (taken or skipped)."""
        self.step, self.nimg = self.step + 1, self.nimg + batch_size

    def checkpoint_entries(self) -> dict:
        """The checkpoint entries of the state: G, G_ema, D, opt_G, opt_D, step, nimg, kimg."""
        return {"G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "step": self.step,
                "nimg": self.nimg, "kimg": self.nimg / 1000}

    def load_checkpoint_entries(self, state: dict) -> None:
        """The inverse of `checkpoint_entries` (strict: the checkpoint's networks are these)."""
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.step, self.nimg = int(state["step"]), int(state["nimg"])

    def snapshot(self) -> dict:
        """In-memory copy of everything a non-finite step could have damaged (G, D, both optimisers)."""
        return copy.deepcopy({"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(),
                              "opt_D": self.opt_D.state_dict()})

    def restore(self, snapshot: dict) -> None:
        """Back to `snapshot`, with no gradients left and D trainable again."""
        self.G.load_state_dict(snapshot["G"])
        self.D.load_state_dict(snapshot["D"])
        self.opt_G.load_state_dict(snapshot["opt_G"])
        self.opt_D.load_state_dict(snapshot["opt_D"])
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_D.zero_grad(set_to_none=True)
        self.D.requires_grad_(True)


def recover(state: TrainingState, snapshot: dict, monitor: Monitor, phase: str, bad_in_a_row: int) -> int:
    """Restore `state` from the snapshot after a non-finite loss; warn; count consecutive failures.

    Returns the new count; `AgoraError` after `MAX_CONSECUTIVE_NONFINITE` in a row."""
    state.restore(snapshot)
    nimg, step = state.nimg, state.step
    monitor.warn(f"non-finite {phase} loss at step {step} (kimg {nimg / 1000:.3f}): step skipped, "
                 "G/D/optimisers restored from the last good snapshot")
    monitor.event("nonfinite", nimg, step=step, phase=phase)
    if bad_in_a_row + 1 >= MAX_CONSECUTIVE_NONFINITE:
        raise AgoraError(f"training diverged: {MAX_CONSECUTIVE_NONFINITE} non-finite steps in a row at kimg "
                         f"{nimg / 1000:.3f}; lower optim.lr_g/lr_d or raise loss.r1_gamma")
    return bad_in_a_row + 1


def rng_state(device: torch.device, conditions: ConditionSampler) -> dict:
    """This process's random streams (CPU, CUDA, the condition sampler's), for a checkpoint."""
    state = {"cpu": torch.get_rng_state(), "conditions": conditions.state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def resume_or_init(state: TrainingState, config: TrainConfig, run_dir: Path, resume: bool, info: DistInfo,
                   head_model: str, conditions: ConditionSampler) -> None:
    """Continue from the run's newest checkpoint (weights, optimisers, counters, random streams), or
    start at step 0 (optionally from `resume_from` weights)."""
    latest = latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise AgoraError(f"{run_dir / CHECKPOINT_DIR}: holds checkpoints of an earlier run; resume it "
                         "(--resume) or choose another --out")
    if latest is None:
        if config.resume_from:  # stage 2 from stage 1: copy every tensor whose name and shape match
            _init_from(state, config.resume_from, info)
        return
    stored = load_checkpoint(latest, map_location=info.device)
    for section in ("generator", "discriminator", "resolution"):
        if stored["config"].get(section) != config_to_dict(getattr(config, section)):
            raise AgoraError(f"{latest}: was trained with a different '{section}' config; resume with the "
                             f"config in {run_dir / 'config.yaml'} or choose another --out")
    if stored["head_model"] != head_model:
        raise AgoraError(f"{latest}: was trained on head model '{stored['head_model']}', the config builds "
                         f"'{head_model}'; set head.* as in {run_dir / 'config.yaml'}")
    state.load_checkpoint_entries(stored)
    rng = stored.get("rng") or []
    if stored.get("world_size") == info.world_size and len(rng) == info.world_size:
        mine = rng[info.rank]
        torch.set_rng_state(mine["cpu"].cpu())
        conditions.set_state(mine["conditions"])
        if "cuda" in mine and info.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"].cpu(), info.device)
    else:  # a different number of processes: fresh, but reproducible, streams
        torch.manual_seed(config.seed * 7919 + info.rank + state.step * 104729)


def _init_from(state: TrainingState, checkpoint: str, info: DistInfo) -> None:
    """G, G_ema, D from `checkpoint`'s tensors of matching name and shape (`resume_from`)."""
    try:
        stored = load_checkpoint(checkpoint, map_location=info.device)
    except AgoraError as exc:
        raise AgoraError(f"resume_from: {exc}") from None
    for name, module in (("G", state.G), ("G_ema", state.G_ema), ("D", state.D)):
        copied, kept = load_matching_weights(module, stored[name])
        if info.is_main:
            print(f"resume_from {name}: {copied} tensors copied, {len(kept)} kept as initialised")
