"""A contact sheet of a FLAME-format head: neutral, jaw open, smile, brow raise and three random
identities, each from the front and at ~35° yaw, rendered as shaded Gaussians (one flat Gaussian
per triangle) with the project's own rasterizer. A quick visual check that a head model -- the
demo head above all -- looks and moves like a head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from agora_core.gaussians import GaussianSet
from agora_core.gaussians.gaussian_set import rgb_to_sh0
from agora_core.head.assets import FlameAssets
from agora_core.head.model import HeadModel
from agora_core.render import Camera, rasterize

SKIN = (0.87, 0.68, 0.56)
LIP = (0.72, 0.36, 0.36)
BROW = (0.35, 0.24, 0.17)
HAIR = (0.30, 0.21, 0.15)
SCLERA = (0.93, 0.92, 0.88)
IRIS = (0.33, 0.24, 0.15)
PUPIL = (0.05, 0.04, 0.04)
CAVITY = (0.35, 0.07, 0.07)
TEETH = (0.93, 0.91, 0.84)
LIGHT = (0.35, 0.55, 0.76)  # towards the light: upper front, a little from the head's left
AMBIENT, DIFFUSE = 0.35, 0.7
VIEW_YAWS_DEG = (0.0, 35.0)
CAMERA_DISTANCE = 1.55  # with the EG3D focal the frame spans ~0.36 m at the head
TARGET = (0.0, -0.015, 0.0)


@dataclass(frozen=True)
class SheetCell:
    """One column of the sheet: a label and the FLAME parameters (missing ones are zero)."""

    label: str
    shape: np.ndarray | None = None
    expr: dict[int, float] | None = None
    jaw: float = 0.0


def default_cells(num_shape: int, seed: int = 0) -> list[SheetCell]:
    """neutral, jaw open (0.3 rad), smile (+2.5), brow raise (+2.5), three random identities."""
    rng = np.random.default_rng(seed)
    cells = [SheetCell("neutral"), SheetCell("jaw open 0.3", jaw=0.3),
             SheetCell("smile +2.5", expr={0: 2.5}), SheetCell("brow raise +2.5", expr={1: 2.5})]
    for k in range(3):  # N(0, 1) coefficients clipped to +-2 sd
        shape = np.clip(rng.normal(size=num_shape), -2.0, 2.0)
        cells.append(SheetCell(f"random shape #{k + 1}", shape=shape))
    return cells


def _rotation_to_quat(rot: np.ndarray) -> np.ndarray:
    """[N,3,3] proper rotations -> [N,4] unit quaternions (w, x, y, z)."""
    m = rot
    w = np.sqrt(np.maximum(0.0, 1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2])) / 2
    x = np.sqrt(np.maximum(0.0, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2])) / 2
    y = np.sqrt(np.maximum(0.0, 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2])) / 2
    z = np.sqrt(np.maximum(0.0, 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2])) / 2
    x = np.copysign(x, m[:, 2, 1] - m[:, 1, 2])
    y = np.copysign(y, m[:, 0, 2] - m[:, 2, 0])
    z = np.copysign(z, m[:, 1, 0] - m[:, 0, 1])
    q = np.stack([w, x, y, z], 1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def mesh_to_gaussians(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray) -> GaussianSet:
    """One flat Gaussian per triangle: mean at the centroid, in-plane axes along the principal
    directions of the triangle (scaled to cover it and overlap its neighbours), thin along the
    normal; colour = albedo [F,3] x Lambertian shading from `LIGHT`. Returns a batch of one set."""
    assert vertices.ndim == 2 and vertices.shape[1] == 3, vertices.shape
    assert faces.ndim == 2 and faces.shape[1] == 3 and albedo.shape == faces.shape, (faces.shape, albedo.shape)
    tri = vertices[faces]
    centre = tri.mean(axis=1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    d = tri - centre[:, None]
    cov = np.einsum("fki,fkj->fij", d, d) / 3.0
    evals, evecs = np.linalg.eigh(cov)  # ascending; the smallest is (nearly) the normal
    t1, t2 = evecs[:, :, 2], np.cross(normal, evecs[:, :, 2])
    rot = np.stack([t1, t2, normal], axis=2)
    scales = np.stack([0.95 * np.sqrt(np.maximum(evals[:, 2], 1e-12)),
                       0.95 * np.sqrt(np.maximum(evals[:, 1], 1e-12)) + 1e-4,
                       np.full(len(faces), 5e-5)], 1)
    light = np.asarray(LIGHT) / np.linalg.norm(LIGHT)
    shade = AMBIENT + DIFFUSE * np.clip(normal @ light, 0.0, None)
    rgb = np.clip(albedo * shade[:, None], 0.0, 1.0)
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))[None]  # noqa: E731
    return GaussianSet(means=t(centre), log_scales=t(np.log(scales)), quats=t(_rotation_to_quat(rot)),
                       sh=rgb_to_sh0(t(rgb)), opacities=t(np.full(len(faces), 0.97)))


def face_albedo(assets: FlameAssets) -> np.ndarray:
    """[F,3] per-triangle colours from the index sets in `extras` (skin when a set is absent)."""
    faces, ex = assets.faces, assets.extras
    albedo = np.tile(np.asarray(SKIN), (len(faces), 1))

    def paint(key, rgb, rule=np.all):
        if key in ex and len(ex[key]):
            sel = np.zeros(assets.num_vertices, bool)
            sel[np.asarray(ex[key], dtype=np.int64)] = True
            albedo[rule(sel[faces], axis=1)] = rgb

    paint("hair_vertices", HAIR, np.any)
    paint("brow_vertices", BROW, np.any)
    paint("lip_vertices", LIP)
    v = assets.v_template
    for key in ("left_eyeball", "right_eyeball"):
        if key in ex and len(ex[key]):
            ball = np.asarray(ex[key], dtype=np.int64)
            sel = np.zeros(assets.num_vertices, bool)
            sel[ball] = True
            on = sel[faces].all(axis=1)
            centre = 0.5 * (v[ball].max(axis=0) + v[ball].min(axis=0))
            cos = (v[faces[on]].mean(axis=1) - centre)[:, 2] / np.linalg.norm(
                v[faces[on]].mean(axis=1) - centre, axis=1)
            albedo[on] = np.where(cos[:, None] > 0.97, PUPIL, np.where(cos[:, None] > 0.86, IRIS, SCLERA))
    paint("mouth_cavity", CAVITY, np.any)
    paint("upper_teeth", TEETH)
    paint("lower_teeth", TEETH)
    return albedo


def with_mouth_interior(assets: FlameAssets) -> FlameAssets:
    """`assets` with the mouth interior added (appendix 0.B.1.1), when that module is usable."""
    if "mouth_cavity" in assets.extras:
        return assets
    try:
        from agora_core.head.mouth import add_mouth_interior
    except ImportError:  # mouth interior not available in this checkout: render the bare hole
        return assets
    return add_mouth_interior(assets)


def render_head_sheet(head: FlameAssets | HeadModel, out_png: str | Path, size: int = 256,
                      cells: list[SheetCell] | None = None, mouth_interior: bool = True) -> np.ndarray:
    """Render the contact sheet to `out_png` and return it (uint8 [H, W, 3], RGB).

    Args:
        head: `FlameAssets` (preferred: its `extras` colour lips, eyes, hair, mouth) or a
            `HeadModel` (plain skin colour).
        size: pixels per cell side.
        cells: columns to show; default `default_cells`.
        mouth_interior: add the mouth cavity and teeth first (FlameAssets only).
    """
    if isinstance(head, FlameAssets):
        assets = with_mouth_interior(head) if mouth_interior else head
        model, albedo = HeadModel(assets), face_albedo(assets)
    else:
        model = head
        albedo = np.tile(np.asarray(SKIN), (model.faces.shape[0], 1))
    cells = default_cells(model.num_shape) if cells is None else cells
    faces = model.faces.numpy()
    cams = []
    for yaw in np.radians(VIEW_YAWS_DEG):
        eye = torch.tensor([[CAMERA_DISTANCE * np.sin(yaw), TARGET[1] + 0.02, CAMERA_DISTANCE * np.cos(yaw)]],
                           dtype=torch.float32)
        cams.append(Camera.look_at(eye, torch.tensor([TARGET], dtype=torch.float32)))
    columns = []
    for cell in cells:
        params = model.zero_params(1)
        if cell.shape is not None:
            params = params.replace(shape=torch.as_tensor(np.asarray(cell.shape, np.float32))[None])
        for k, value in (cell.expr or {}).items():
            params.expression[0, k] = value
        params.jaw[0, 0] = cell.jaw
        with torch.no_grad():
            verts = model(params)[0].double().numpy()
        gaussians = mesh_to_gaussians(verts, faces, albedo)
        tiles = []
        for cam in cams:
            with torch.no_grad():
                rgb, _ = rasterize(gaussians, cam, size, size, background=1.0)
            tile = (rgb[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            tiles.append(np.ascontiguousarray(tile))
        label = np.full((22, size, 3), 255, np.uint8)
        cv2.putText(label, cell.label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.concatenate([label] + tiles, axis=0))
    sheet = np.concatenate(columns, axis=1)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return sheet
