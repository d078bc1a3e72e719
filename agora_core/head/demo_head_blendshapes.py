"""Procedural demo head, part 3: shape, expression and eyelid blendshapes (FLAME's B_S, B_E and
SMIRK's eyelids, eq. 2), built as smooth analytic displacement fields on the template.

- Shape (identity): global proportions first (head width/height/depth, face length, jaw width...),
  then facial features, then low-frequency harmonic fields; each scaled to a max displacement that
  decreases with its index (10 mm -> ~2 mm per unit coefficient), like a PCA basis. Eyeballs move
  rigidly with the field at their centre, so they stay spheres.
- Expression: localised fields (Gaussian falloff in 3D around facial landmarks) with
  FLAME-like magnitudes (coefficient 1 -> 2-6 mm); lip fields are masked to one side of the mouth
  slit and tapered to zero at the corners, so e.g. "lower lip depress" never moves the upper lip.
  Bilateral movements come as a symmetric field plus an L-minus-R asymmetry field (independent).
- Eyelids: the skin inside each lid opening moves onto the lid cap in front of the eyeball
  (coefficient 1 = closed); it sits deeper towards the lower lid, so intermediate values cover
  the eye from the top down.
"""

from __future__ import annotations

import numpy as np

from agora_core.head import demo_head_geometry as geo
from agora_core.head.demo_head_geometry import HeadSurface, mouth_lateral, smoothstep

NUM_SHAPE = 60
NUM_EXPRESSION = 60
SHAPE_MAX_MM = 8.0 * 0.955 ** np.arange(NUM_SHAPE)  # per unit coefficient, decreasing

MY, MX = geo.MOUTH_Y, geo.MOUTH_HALF_WIDTH
EX, EY = geo.EYE_CENTRE[0], geo.EYE_CENTRE[1]

# name, then per side: (centre, sigma, direction, max mm, mask); x of centre/direction mirrored for R.
# masks: "upper"/"lower" = that side of the mouth slit, tapered to 0 at the corners; None = none.
_L = {
    "corner_up": [((MX, MY, 0.088), 0.011, (0.35, 0.8, -0.45), 4.5, None),
                  ((0.04, -0.012, 0.08), 0.014, (0.1, 1.0, 0.35), 2.0, None),
                  ((EX, EY - 0.008, 0.078), 0.007, (0.0, 1.0, 0.2), 1.0, None)],
    "brow_up": [((EX, EY + 0.017, 0.088), (0.02, 0.01, 0.02), (0.0, 1.0, 0.1), 4.0, None),
                ((EX, EY + 0.035, 0.082), (0.02, 0.014, 0.02), (0.0, 1.0, 0.0), 1.5, None)],
    "brow_down": [((0.016, EY + 0.015, 0.09), (0.011, 0.009, 0.02), (-0.45, -0.85, 0.15), 3.5, None)],
    "corner_down": [((MX, MY, 0.088), 0.011, (0.1, -1.0, -0.1), 4.0, None)],
    "corner_out": [((MX, MY, 0.088), 0.012, (1.0, -0.15, -0.35), 4.0, None)],
    "corner_back": [((MX, MY, 0.088), 0.009, (-0.3, 0.0, -1.0), 3.0, None)],
    "cheek_puff": [((0.046, -0.03, 0.07), 0.017, "normal", 4.0, None)],
    "cheek_raise": [((0.04, -0.005, 0.082), 0.012, (0.0, 1.0, 0.4), 2.5, None),
                    ((EX, EY - 0.006, 0.079), (0.01, 0.004, 0.01), (0.0, 1.0, 0.1), 1.2, None)],
    "sneer": [((0.012, 0.004, 0.096), 0.009, (0.1, 1.0, 0.25), 2.5, None),
              ((0.01, MY + 0.006, 0.097), 0.008, (0.0, 1.0, 0.3), 2.0, "upper")],
    "inner_brow_up": [((0.014, EY + 0.016, 0.09), 0.01, (0.0, 1.0, 0.1), 4.0, None)],
    "outer_brow_up": [((0.045, EY + 0.016, 0.078), 0.011, (0.0, 1.0, 0.0), 3.5, None)],
    "lid_up": [((EX, EY + 0.008, 0.08), (0.012, 0.004, 0.01), (0.0, 1.0, 0.15), 2.0, None)],
    "lid_down": [((EX, EY + 0.009, 0.08), (0.012, 0.0045, 0.01), (0.0, -1.0, 0.1), 2.0, None)],
    "lower_lid_up": [((EX, EY - 0.006, 0.079), (0.012, 0.004, 0.01), (0.0, 1.0, 0.1), 2.0, None)],
    "nose_flare": [((0.0135, geo.SUBNASALE_Y + 0.006, 0.096), 0.005, (1.0, 0.1, 0.0), 2.0, None)],
    "masseter": [((0.056, -0.04, 0.03), 0.013, "normal", 2.0, None)],
    "neck_tense": [((0.035, -0.125, 0.03), (0.012, 0.025, 0.015), "normal", 2.0, None)],
    "nasolabial": [((0.024, -0.028, 0.092), 0.008, "-normal", 2.0, None)],
}
# symmetric mouth / face fields: (centre, sigma, direction, max mm, mask)
_S = {
    "lips_part": [((0, MY + 0.005, 0.098), (0.02, 0.006, 0.02), (0, 1.0, 0.1), 2.0, "upper"),
                  ((0, MY - 0.006, 0.098), (0.02, 0.007, 0.02), (0, -1.0, 0.1), 2.5, "lower")],
    "pucker": [((0, MY, 0.097), (0.022, 0.012, 0.02), "pucker", 4.0, None)],
    "lip_press": [((0, MY + 0.005, 0.098), (0.02, 0.006, 0.02), (0, -0.25, -1.0), 2.2, "upper"),
                  ((0, MY - 0.006, 0.098), (0.02, 0.007, 0.02), (0, 0.25, -1.0), 2.2, "lower")],
    "funnel": [((0, MY + 0.005, 0.098), (0.02, 0.007, 0.02), (0, 0.6, 1.0), 3.0, "upper"),
               ((0, MY - 0.006, 0.098), (0.02, 0.008, 0.02), (0, -0.6, 1.0), 3.0, "lower")],
    "upper_lip_up": [((0, MY + 0.005, 0.098), (0.02, 0.007, 0.02), (0, 1.0, 0.3), 3.0, "upper")],
    "lower_lip_down": [((0, MY - 0.006, 0.098), (0.02, 0.007, 0.02), (0, -1.0, 0.2), 3.5, "lower")],
    "chin_up": [((0, MY - 0.034, 0.09), 0.012, (0, 1.0, 0.5), 3.0, None),
                ((0, MY - 0.006, 0.098), (0.018, 0.007, 0.02), (0, 0.8, 0.6), 2.0, "lower")],
    "mouth_left": [((0, MY, 0.095), (0.025, 0.015, 0.02), (1.0, 0, -0.1), 3.0, None)],
    "upper_lip_suck": [((0, MY + 0.004, 0.098), (0.02, 0.006, 0.02), (0, -0.5, -1.0), 2.5, "upper")],
    "lower_lip_suck": [((0, MY - 0.005, 0.098), (0.02, 0.007, 0.02), (0, 0.5, -1.0), 2.5, "lower")],
    "upper_lip_out": [((0, MY + 0.005, 0.098), (0.018, 0.006, 0.02), (0, 0.0, 1.0), 3.0, "upper")],
    "lower_lip_out": [((0, MY - 0.006, 0.098), (0.018, 0.007, 0.02), (0, 0.0, 1.0), 3.0, "lower")],
    "chin_forward": [((0, MY - 0.036, 0.09), 0.013, (0, -0.3, 1.0), 2.5, None)],
    "forehead_up": [((0, 0.075, 0.075), (0.035, 0.015, 0.03), (0, 1.0, 0.0), 2.0, None)],
    "upper_lip_long": [((0, MY + 0.007, 0.098), (0.02, 0.007, 0.02), (0, -1.0, 0.0), 2.0, "upper")],
    "brow_squeeze": [((0.015, EY + 0.014, 0.09), 0.009, (-1.0, 0.0, 0.0), 2.5, None),
                     ((-0.015, EY + 0.014, 0.09), 0.009, (1.0, 0.0, 0.0), 2.5, None)],
}

# The basis, in order: ("sym", name) = left + right, ("asym", name) = left - right, ("mid", name).
_EXPRESSION_ORDER = [
    ("sym", "corner_up", "smile"), ("sym", "brow_up", "brow_raise"),
    ("sym", "brow_down", "brow_lower"), ("sym", "corner_down", "frown"),
    ("mid", "pucker", "lip_pucker"), ("mid", "lips_part", "lips_part"),
    ("sym", "corner_out", "mouth_stretch"), ("mid", "lip_press", "lip_press"),
    ("mid", "funnel", "lip_funnel"), ("sym", "cheek_puff", "cheek_puff"),
    ("sym", "sneer", "nose_wrinkle"), ("mid", "upper_lip_up", "upper_lip_raise"),
    ("mid", "lower_lip_down", "lower_lip_depress"), ("mid", "chin_up", "chin_raise"),
    ("asym", "corner_up", "smile_left_minus_right"), ("asym", "brow_up", "brow_raise_left_minus_right"),
    ("sym", "inner_brow_up", "inner_brow_raise"), ("sym", "outer_brow_up", "outer_brow_raise"),
    ("sym", "lid_up", "eyes_wide"), ("sym", "cheek_raise", "cheek_raise_squint"),
    ("sym", "nose_flare", "nose_flare"), ("mid", "mouth_left", "mouth_shift_left"),
    ("asym", "corner_down", "frown_left_minus_right"), ("sym", "corner_back", "dimple"),
    ("asym", "corner_back", "dimple_left_minus_right"), ("asym", "sneer", "nose_wrinkle_left_minus_right"),
    ("asym", "corner_out", "stretch_left_minus_right"), ("asym", "cheek_puff", "cheek_puff_left_minus_right"),
    ("asym", "cheek_raise", "squint_left_minus_right"), ("asym", "brow_down", "brow_lower_left_minus_right"),
    ("asym", "lid_up", "eyes_wide_left_minus_right"), ("asym", "inner_brow_up", "inner_brow_left_minus_right"),
    ("asym", "outer_brow_up", "outer_brow_left_minus_right"), ("mid", "upper_lip_suck", "upper_lip_suck"),
    ("mid", "lower_lip_suck", "lower_lip_suck"), ("mid", "upper_lip_out", "upper_lip_protrude"),
    ("mid", "lower_lip_out", "lower_lip_protrude"), ("mid", "chin_forward", "chin_skin_forward"),
    ("sym", "neck_tense", "neck_tense"), ("mid", "forehead_up", "forehead_raise"),
    ("sym", "nasolabial", "nasolabial_deepen"), ("mid", "upper_lip_long", "upper_lip_lengthen"),
    ("sym", "masseter", "jaw_clench"), ("mid", "brow_squeeze", "brow_squeeze"),
    ("sym", "lid_down", "upper_lid_lower"), ("sym", "lower_lid_up", "lower_lid_raise"),
    ("asym", "lower_lid_up", "lower_lid_left_minus_right"), ("asym", "nasolabial", "nasolabial_left_minus_right"),
    ("asym", "masseter", "jaw_clench_left_minus_right"), ("asym", "lid_down", "upper_lid_left_minus_right"),
]
NUM_EXTRA_EXPRESSION = NUM_EXPRESSION - len(_EXPRESSION_ORDER)  # small random localised fields

DEMO_EXPRESSION_NAMES: tuple[str, ...] = tuple(name for _, _, name in _EXPRESSION_ORDER) + tuple(
    f"local_{k}" for k in range(NUM_EXTRA_EXPRESSION))
"""Meaning of each expression coefficient of the demo head (index 0 = smile, 1 = brow raise, ...);
"x_left_minus_right" components move the head's left side (+x) one way and the right the other."""


def _skin(surface: HeadSurface) -> np.ndarray:
    mask = np.ones(len(surface.vertices), dtype=bool)
    mask[surface.left_eyeball] = False
    mask[surface.right_eyeball] = False
    return mask


def _lip_masks(surface: HeadSurface) -> dict[str, np.ndarray]:
    """{"upper", "lower"}: [V] 1 on that side of the slit (by grid row) times the lip-shaped
    lateral taper (0 at and beyond the corners), so the two never disagree across the opening."""
    lat = mouth_lateral(surface.vertices[:, 0]) ** 0.5
    upper = (surface.row >= 0) & (surface.row <= surface.mouth_row)
    lower = surface.row > surface.mouth_row
    return {"upper": upper * lat, "lower": lower * lat}


def _term(v, normals, masks, centre, sigma, direction, mm, mask, mirror=False) -> np.ndarray:
    """One Gaussian displacement term [V,3]."""
    sx = -1.0 if mirror else 1.0
    c = np.asarray(centre, dtype=np.float64) * [sx, 1.0, 1.0]
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (3,))
    fall = np.exp(-0.5 * (((v - c) / sig) ** 2).sum(axis=1))
    if isinstance(direction, str):
        if direction == "pucker":  # forward, corners drawn in towards the middle
            d = np.stack([-2.5 * v[:, 0], np.zeros(len(v)), np.full(len(v), 0.06)], 1)
            d /= np.linalg.norm(d, axis=1, keepdims=True).max()
        else:
            d = normals * (-1.0 if direction.startswith("-") else 1.0)
    else:
        d = np.asarray(direction, dtype=np.float64) * [sx, 1.0, 1.0]
        d = np.broadcast_to(d / np.linalg.norm(d), v.shape)
    field = fall[:, None] * d
    if mask is not None:
        field = field * masks[mask][:, None]
    return 1e-3 * mm * field / max(np.linalg.norm(field, axis=1).max(), 1e-12)


def expression_basis(surface: HeadSurface, normals: np.ndarray) -> np.ndarray:
    """[V, 3, NUM_EXPRESSION] expression blendshapes (eyeballs never move: zero rows)."""
    v, skin = surface.vertices, _skin(surface)
    masks = _lip_masks(surface)
    comps = []
    for kind, key, _ in _EXPRESSION_ORDER:
        if kind == "mid":
            f = sum(_term(v, normals, masks, *t) for t in _S[key])
        else:
            left = sum(_term(v, normals, masks, *t) for t in _L[key])
            right = sum(_term(v, normals, masks, *t, mirror=True) for t in _L[key])
            f = left + right if kind == "sym" else left - right
        comps.append(f)
    rng = np.random.default_rng(20240607)
    face = np.nonzero(skin & (v[:, 2] > 0.06) & (np.abs(v[:, 0]) < 0.055) & (v[:, 1] > -0.09)
                      & (v[:, 1] < 0.07) & (np.abs(v[:, 1] - MY) > 0.01))[0]
    for _ in range(NUM_EXTRA_EXPRESSION):
        centre = v[rng.choice(face)]
        d = rng.normal(size=3) * [1.0, 1.0, 0.5]
        comps.append(_term(v, normals, masks, centre, rng.uniform(0.007, 0.012), d, rng.uniform(2.0, 3.0), None))
    basis = np.stack(comps, axis=2)
    # a field's max is set per term; rescale the sum so that its max is that of its largest term
    for k, (kind, key, _) in enumerate(_EXPRESSION_ORDER):
        terms = _S[key] if kind == "mid" else _L[key]
        peak = max(t[3] for t in terms) * 1e-3
        basis[:, :, k] *= peak / np.linalg.norm(basis[:, :, k], axis=1).max()
    basis[~skin] = 0.0
    return basis


def eyelid_basis(surface: HeadSurface) -> np.ndarray:
    """[V, 3, 2] SMIRK-style eyelids (left, right): 1 moves the skin inside the lid opening onto
    the lid cap 0.3 mm in front of its template lid surface, closing the eye."""
    v = surface.vertices
    dirs = np.zeros((len(v), 3, 2))
    for k, side in enumerate((1.0, -1.0)):
        inside = surface.eye_opening & (np.sign(v[:, 0]) == side)
        _, lid_z, _ = geo.eye_region(v[inside], side)
        dirs[inside, 2, k] = lid_z + 0.0003 - v[inside, 2]
    return dirs


def _shape_fields(v: np.ndarray) -> list[np.ndarray]:
    """Unscaled identity displacement fields [N,3] at points v (named ones, then harmonics)."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    zero = np.zeros_like(x)
    head = smoothstep(-0.16, -0.09, y)  # 1 on the head, fading down the neck
    front = smoothstep(0.0, 0.06, z) * smoothstep(0.075, 0.04, np.abs(x))
    lower = smoothstep(-0.01, -0.06, y) * head
    g = lambda c, s: np.exp(-0.5 * (((v - np.asarray(c)) / np.asarray(s)) ** 2).sum(1))  # noqa: E731
    cheeks = g((0.045, -0.02, 0.07), 0.02) + g((-0.045, -0.02, 0.07), 0.02)
    f = [
        np.stack([x * head, zero, zero], 1),  # head width
        np.stack([zero, (y - 0.03) * smoothstep(-0.14, -0.06, y), zero], 1),  # head height
        np.stack([zero, zero, (z + 0.01) * head], 1),  # head depth
        np.stack([zero, -lower * front, 0.3 * lower * front], 1),  # face length
        np.stack([x * lower, zero, zero], 1),  # jaw width
        g((0, -0.08, 0.09), 0.015)[:, None] * [0, -0.4, 1.0],  # chin protrusion
        g((0, 0.0, 0.105), (0.012, 0.018, 0.02))[:, None] * [0, -0.5, 1.0],  # nose length
        np.stack([x * g((0, -0.008, 0.1), (0.016, 0.013, 0.02)), zero, zero], 1),  # nose width
        g((0, 0.022, 0.095), (0.008, 0.012, 0.02))[:, None] * [0, 0, 1.0],  # nose bridge
        np.stack([0.4 * (g((0.045, -0.02, 0.07), 0.02) - g((-0.045, -0.02, 0.07), 0.02)), -0.2 * cheeks, 0.6 * cheeks], 1),  # cheeks
        np.stack([zero, zero, (y - 0.04) * smoothstep(0.03, 0.06, y) * front], 1),  # forehead slope
        (g((0.03, 0.047, 0.09), (0.02, 0.008, 0.02)) + g((-0.03, 0.047, 0.09), (0.02, 0.008, 0.02)))[:, None] * [0, 0.2, 1.0],  # brows
        np.stack([g((0.031, 0.031, 0.07), 0.016) - g((-0.031, 0.031, 0.07), 0.016), zero, zero], 1),  # eye spacing
        g((0, geo.MOUTH_Y, 0.097), (0.02, 0.01, 0.015))[:, None] * [0, 0, 1.0],  # lip fullness
        np.stack([x, zero, z - geo.NECK_AXIS_Z], 1) * smoothstep(-0.08, -0.13, y)[:, None],  # neck thickness
        g((0, 0.04, -0.1), 0.05)[:, None] * [0, 0.2, -1.0],  # occiput
        np.stack([g((0.075, 0.008, -0.012), 0.018) - g((-0.075, 0.008, -0.012), 0.018), zero, zero], 1),  # ears
        np.stack([zero, g((0.031, 0.031, 0.07), 0.018) + g((-0.031, 0.031, 0.07), 0.018), zero], 1),  # eye height
        np.stack([x * g((0, geo.MOUTH_Y, 0.095), (0.03, 0.012, 0.02)), zero, zero], 1),  # mouth width
        (np.stack([x, zero, z - 0.01], 1) * (g((0.05, -0.03, 0.05), 0.025) + g((-0.05, -0.03, 0.05), 0.025))[:, None]),  # face roundness
    ]
    # Low-frequency fields: products of cos/sin of low order in normalised coordinates along one
    # axis, in a fixed shuffled order; a candidate is kept only if >= 35% of it (in norm) lies
    # outside the span of the fields kept so far, so the basis stays well conditioned.
    p = np.stack([x / 0.08, (y + 0.02) / 0.12, (z + 0.01) / 0.1], 1)
    scalars = {}
    for a, b, c in [(a, b, c) for a in range(4) for b in range(4) for c in range(4) if 0 < a + b + c <= 4]:
        for ph in range(8):  # cos or sin per coordinate; sin of a zero frequency is skipped
            if any((ph >> bit) & 1 and freq == 0 for bit, freq in enumerate((a, b, c))):
                continue
            trig = [np.sin if (ph >> bit) & 1 else np.cos for bit in range(3)]
            scalars[(a, b, c, ph)] = trig[0](a * p[:, 0]) * trig[1](b * p[:, 1]) * trig[2](c * p[:, 2]) * head
    candidates = [(key, axis) for key in scalars for axis in range(3)]
    order = np.random.default_rng(1234).permutation(len(candidates))
    q = np.linalg.qr(np.stack([fi.ravel() for fi in f], 1))[0].reshape(len(v), 3, -1)
    for i in order:
        if len(f) == NUM_SHAPE:
            break
        key, axis = candidates[i]
        sc = scalars[key]
        proj = np.ascontiguousarray(q[:, axis, :]).T @ sc  # inner products with the kept fields
        norm2 = sc @ sc
        if norm2 - proj @ proj >= 0.35**2 * norm2:
            cand = np.zeros((len(v), 3))
            cand[:, axis] = sc
            resid = cand - q @ proj
            q = np.concatenate([q, (resid / np.linalg.norm(resid))[:, :, None]], 2)
            f.append(cand)
    assert len(f) == NUM_SHAPE, len(f)
    return f


def shape_basis(surface: HeadSurface) -> np.ndarray:
    """[V, 3, NUM_SHAPE] shape blendshapes; eyeball vertices move rigidly with their centre."""
    v = surface.vertices.copy()
    for ball, centre in ((surface.left_eyeball, surface.eye_centres[0]), (surface.right_eyeball, surface.eye_centres[1])):
        v[ball] = centre  # evaluate each field at the eyeball's centre
    basis = np.stack(_shape_fields(v), axis=2)
    peak = np.linalg.norm(basis, axis=1).max(axis=0)
    return basis * (1e-3 * SHAPE_MAX_MM / np.maximum(peak, 1e-12))[None, None, :]
