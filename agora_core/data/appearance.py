"""Procedural identity appearance for the demo head: skin, hair, brows, lips, eyes, mouth.

Each synthetic identity gets per-vertex albedo from the demo head's named regions
(`FlameAssets.extras`) plus random per-identity variation: skin tone, hair colour and hairline,
brow darkness, lip tint, iris colour, cheek blush and a low-frequency skin mottling. Shading is a
fixed Lambertian light in the head's frame (the camera orbits a fixed head, so the lighting is
"baked" like the lighting of a photo).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.91, 0.71, 0.58], [0.82, 0.60, 0.46], [0.68, 0.47, 0.34], [0.50, 0.34, 0.24], [0.36, 0.24, 0.17]]
)
HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.42, 0.28, 0.15], [0.75, 0.62, 0.38], [0.55, 0.22, 0.10], [0.62, 0.62, 0.62]]
)
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.20, 0.35, 0.55], [0.25, 0.40, 0.25], [0.12, 0.08, 0.05]])
LIGHT_DIR = np.array([0.35, 0.55, 0.75]) / np.linalg.norm([0.35, 0.55, 0.75])  # upper front left
AMBIENT = 0.45


@dataclass
class Identity:
    """Random appearance parameters of one synthetic person."""

    skin: np.ndarray  # [3] albedo
    hair: np.ndarray  # [3]
    iris: np.ndarray  # [3]
    hairline: float  # metres above the eyes where the front hairline sits
    hair_back_bottom: float  # y where hair ends at the back (short vs long)
    bald: bool
    lip_tint: float
    blush: float
    mottling_phase: np.ndarray  # [3, 3] random frequencies/phases of skin mottling


def sample_identity(rng: np.random.Generator) -> Identity:
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    lo = int(np.floor(t))
    skin = SKIN_TONES[lo] * (1 - (t - lo)) + SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] * (t - lo)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    return Identity(
        skin=np.clip(skin * rng.uniform(0.93, 1.07, size=3), 0, 1),
        hair=np.clip(hair, 0, 1),
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))],
        hairline=float(rng.uniform(0.045, 0.08)),
        hair_back_bottom=float(rng.uniform(-0.09, -0.01)),
        bald=bool(rng.uniform() < 0.08),
        lip_tint=float(rng.uniform(0.25, 0.6)),
        blush=float(rng.uniform(0.0, 0.25)),
        mottling_phase=rng.normal(size=(3, 3)),
    )


def _mask(num_v: int, extras: dict, key: str) -> np.ndarray:
    m = np.zeros(num_v, dtype=bool)
    if key in extras:
        m[np.asarray(extras[key], dtype=np.int64)] = True
    return m


def vertex_albedo(v_template: np.ndarray, extras: dict, ident: Identity) -> np.ndarray:
    """[V, 3] albedo in [0, 1] of one identity on the (neutral) template vertices [V, 3]."""
    v = np.asarray(v_template, dtype=np.float64)
    n = v.shape[0]
    freqs = ident.mottling_phase
    mottle = 1.0 + 0.05 * np.sin(v @ freqs[:, :3].T * 40.0).mean(axis=1)
    albedo = ident.skin[None, :] * mottle[:, None]

    eye_y = 0.031  # demo head eye height (its landmarks); a vertex's height relative to the eyes
    face = _mask(n, extras, "face_vertices")
    scalp = ~face & ~_mask(n, extras, "neck_vertices") & ~_mask(n, extras, "eye_vertices")
    front = v[:, 2] > 0.02
    hair = scalp & (
        (front & (v[:, 1] > eye_y + ident.hairline))
        | (~front & (v[:, 1] > ident.hair_back_bottom))
    )
    hair |= _mask(n, extras, "hair_vertices") & (v[:, 1] > eye_y + ident.hairline)
    ears = (np.abs(v[:, 0]) > 0.068) & (v[:, 1] < eye_y + 0.01) & (v[:, 1] > -0.03)
    hair &= ~ears
    if not ident.bald:
        albedo[hair] = ident.hair
    brows = _mask(n, extras, "brow_vertices")
    albedo[brows] = 0.35 * albedo[brows] + 0.65 * ident.hair * 0.8
    lips = _mask(n, extras, "lip_vertices")
    lip_colour = np.array([0.72, 0.30, 0.30])
    albedo[lips] = (1 - ident.lip_tint) * albedo[lips] + ident.lip_tint * lip_colour
    cheeks = face & (np.abs(v[:, 0]) > 0.03) & (np.abs(v[:, 1] + 0.005) < 0.02) & (v[:, 2] > 0.05)
    albedo[cheeks] = (1 - ident.blush) * albedo[cheeks] + ident.blush * np.array([0.85, 0.45, 0.45])

    eyes = _mask(n, extras, "eye_vertices")
    if eyes.any():
        albedo[eyes] = np.array([0.93, 0.92, 0.90])  # sclera
        for side in (1.0, -1.0):
            ball = eyes & (np.sign(v[:, 0]) == side)
            if not ball.any():
                continue
            centre = v[ball].mean(axis=0)
            front_pt = centre + np.array([0, 0, 1.0]) * (v[ball, 2].max() - centre[2])
            d = np.linalg.norm(v - front_pt, axis=1)
            radius = v[ball, 2].max() - centre[2]
            albedo[ball & (d < 0.55 * radius)] = ident.iris
            albedo[ball & (d < 0.25 * radius)] = np.array([0.03, 0.03, 0.03])
    albedo[_mask(n, extras, "mouth_cavity")] = np.array([0.35, 0.08, 0.09])
    teeth = _mask(n, extras, "upper_teeth") | _mask(n, extras, "lower_teeth")
    albedo[teeth] = np.array([0.92, 0.90, 0.82])
    return np.clip(albedo, 0.0, 1.0)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals [B, V, 3] of triangle meshes vertices [B, V, 3], faces [F, 3]."""
    tri = vertices[:, faces]  # [B, F, 3, 3]
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals.index_add_(1, faces[:, k], fn)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def shade(albedo: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Lambertian shading with a fixed head-frame light: albedo, normals [B, M, 3] -> rgb [B, M, 3]."""
    light = torch.as_tensor(LIGHT_DIR, dtype=normals.dtype, device=normals.device)
    lambert = (normals @ light).clamp_min(0.0)
    return (albedo * (AMBIENT + (1 - AMBIENT) * lambert[..., None])).clamp(0.0, 1.0)
