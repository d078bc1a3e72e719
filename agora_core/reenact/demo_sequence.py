"""A synthetic driving sequence for the demo (the demo head has no SMIRK model to track a video).

Smooth trajectories from a seed: each of the first expression coefficients is a sum of two slow
sinusoids (0.15–0.6 Hz) with decaying amplitude; the jaw opens and closes (0–0.3 rad); the eyes
blink twice (smooth bumps); the head turns (yaw ±0.3 rad, pitch ±0.1 rad), realised by the camera.
"""

from __future__ import annotations

import numpy as np

from agora_core.reenact.driving import DrivingSequence

NUM_ANIMATED_EXPRESSION = 10  # coefficients that move; the rest stay 0
NUM_EXPRESSION = 50  # SMIRK's expression size


def make_demo_sequence(num_frames: int = 48, fps: float = 24.0, seed: int = 0) -> DrivingSequence:
    """`num_frames` frames at `fps` of smooth expression, jaw, eyelid and head-pose motion.

    `.save("driving.npz")` writes it for `agora reenact --params`."""
    assert num_frames >= 1 and fps > 0, (num_frames, fps)
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    expression = np.zeros((num_frames, NUM_EXPRESSION), np.float32)
    for k in range(NUM_ANIMATED_EXPRESSION):
        amp = 1.2 / (1 + 0.3 * k)
        for _ in range(2):
            freq, phase = rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi)
            expression[:, k] += 0.5 * amp * np.sin(2 * np.pi * freq * t + phase)
    jaw = np.zeros((num_frames, 3), np.float32)
    jaw[:, 0] = 0.15 * (1 - np.cos(2 * np.pi * rng.uniform(0.3, 0.5) * t + rng.uniform(0, 1)))
    eyelids = np.zeros((num_frames, 2), np.float32)
    duration = max(t[-1], 1e-6)
    for centre in rng.uniform(0.15, 0.85, size=2) * duration:
        eyelids += np.exp(-0.5 * ((t - centre) / 0.06) ** 2)[:, None]
    pose = np.zeros((num_frames, 3), np.float32)
    pose[:, 1] = 0.3 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))  # yaw
    pose[:, 0] = 0.1 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 2 * np.pi))  # pitch
    return DrivingSequence(expression, jaw, np.clip(eyelids, 0, 1).astype(np.float32), pose,
                           np.zeros((num_frames, 3), np.float32), float(fps), None)
