"""Procedural demo head, facial relief: the landmarks the face is built around and the height
fields that turn the smooth base volume into a face -- brow ridge, nose, cheekbones, lips around
a closed slit, chin, ears, and eye sockets whose lids cover the eyeballs. Pure functions of
position (and the base normal), shared by the template, its eyelid blendshapes and the rig.
"""

from __future__ import annotations

import numpy as np

# --- facial landmarks that the relief is built around -----------------------------------------------
EYE_CENTRE = np.array([0.0315, 0.031, 0.063])  # left eye (+x); the right eye mirrors it
EYE_RADIUS = 0.0125
EYE_OPENING = (0.0118, 0.0058, 0.0044)  # half-width, upper and lower half-height of the lid opening
MOUTH_Y, MOUTH_HALF_WIDTH = -0.043, 0.0245
NOSE_TIP_Y, SUBNASALE_Y, NASION_Y = -0.003, -0.019, 0.036
EAR_CENTRE = np.array([0.074, 0.008, -0.012])


def smoothstep(edge0, edge1, x):
    """Hermite step from 0 at edge0 to 1 at edge1 (edges may be in either order)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _g(x, c, s):
    return np.exp(-0.5 * ((x - c) / s) ** 2)


def front_mask(b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """[N] 1 on the front of the head (normal towards +z), 0 on the sides and the back."""
    return smoothstep(0.12, 0.42, n[:, 2]) * smoothstep(0.0, 0.03, b[:, 2])


def mouth_lateral(x: np.ndarray) -> np.ndarray:
    """[N] 1 at the mouth's centre line, 0 at and beyond the corners (a lip-shaped taper)."""
    return np.clip(1.0 - (x / MOUTH_HALF_WIDTH) ** 2, 0.0, 1.0)


def eye_region(b: np.ndarray, side: float):
    """Eye socket geometry around the eye on `side` (+1 left, -1 right) for points b [N,3].

    Returns (w, lid_z, ball_z): the socket's blend weight [N] (1 near the eye, 0 on the face),
    the z of a lid skin cap over the eyeball [N] (~2 mm in front of it), and the z of the
    eyeball's front surface [N] (its rim value outside the ball's silhouette).
    """
    centre = EYE_CENTRE * [side, 1.0, 1.0]
    dx, dy = b[:, 0] - centre[0], b[:, 1] - centre[1]
    rho = np.hypot(dx, dy)
    w = smoothstep(0.0215, 0.0112, np.hypot(dx, 1.2 * dy))
    lid_z = centre[2] + (EYE_RADIUS + 0.0021) * np.sqrt(np.clip(1.0 - (rho / 0.021) ** 2, 0.0, 1.0))
    ball_z = centre[2] + np.sqrt(np.clip(EYE_RADIUS**2 - rho**2, 0.0, None))
    return w, lid_z, ball_z


def opening_depth(fraction: np.ndarray) -> np.ndarray:
    """How far [N] the skin inside the lid opening sits behind the eyeball's front surface, from
    the upper lid (fraction 0) to the lower lid (1): deeper below, so that a linear lid-closing
    blendshape covers the eye from the top down."""
    return 0.0005 + 0.0045 * fraction


def facial_relief(b: np.ndarray, n: np.ndarray, opening: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Displacements [N,3] that turn the base surface (points b, normals n) into a face.

    `opening` [N] marks the skin inside the lid openings (hidden in the eyeballs) and
    `fraction` [N] its position from the upper (0) to the lower (1) lid margin.
    """
    x, y = b[:, 0], b[:, 1]
    front = front_mask(b, n)
    dz = np.zeros(len(b))
    # brow ridge: an arch above each eye and the glabella between them
    for side in (1.0, -1.0):
        ex = side * EYE_CENTRE[0]
        arch = EYE_CENTRE[1] + 0.0155 + 0.003 * np.clip(1 - ((x - ex) / 0.024) ** 2, 0, 1)
        dz += 0.0036 * _g(y, arch, 0.0055) * smoothstep(0.058, 0.04, np.abs(x)) * smoothstep(0.0, 0.012, side * x)
    dz += 0.0022 * _g(x, 0, 0.01) * _g(y, EYE_CENTRE[1] + 0.013, 0.008)
    # nose: dorsum from the nasion to the tip, a rounded underside to the subnasale, alae
    tip, sub = 0.0215, 0.0035
    s = np.clip((NASION_Y - y) / (NASION_Y - NOSE_TIP_Y), 0.0, 1.0)
    u = np.clip((NOSE_TIP_Y - y) / (NOSE_TIP_Y - SUBNASALE_Y), 0.0, 1.0)
    profile = np.where(y >= NOSE_TIP_Y, tip * s**1.35, sub + (tip - sub) * np.sqrt(1.0 - u**2))
    profile = np.where(y < SUBNASALE_Y, sub * _g(y, SUBNASALE_Y, 0.0025), profile)
    width = np.where(y >= NOSE_TIP_Y, 0.005 + 0.0045 * s, 0.0095 - 0.0035 * u)
    dz += profile * np.exp(-((x / width) ** 2)) + 0.0025 * _g(x, 0, 0.006) * _g(y, NOSE_TIP_Y, 0.005)
    for side in (1.0, -1.0):
        dz += 0.0075 * _g(x, side * 0.0125, 0.0048) * _g(y, SUBNASALE_Y + 0.006, 0.0045)
    # mouth: muzzle, upper and lower lip, the slit crease between them, labiomental fold, chin
    lat = mouth_lateral(x)
    dz += 0.0065 * _g(x, 0, 0.024) * _g(y, MOUTH_Y - 0.002, 0.017)
    h_up = 0.0075 * lat**0.5 + 0.0012
    dz += 0.0042 * lat**0.6 * np.exp(-(((y - MOUTH_Y - 0.5 * h_up) / (0.55 * h_up)) ** 2))
    dz += 0.0048 * lat**0.6 * _g(y, MOUTH_Y - 0.0052, 0.0042)
    dz -= 0.0030 * lat**0.5 * _g(y, MOUTH_Y, 0.0011)
    dz -= 0.0026 * _g(x, 0, 0.015) * _g(y, MOUTH_Y - 0.0165, 0.0033)
    dz += 0.0085 * _g(x, 0, 0.0135) * _g(y, MOUTH_Y - 0.036, 0.0105)
    disp = (dz * front)[:, None] * np.array([0.0, 0.0, 1.0])
    # cheekbones and cheeks, along the normal
    for side in (1.0, -1.0):
        bump = 0.0042 * _g(x, side * 0.047, 0.013) * _g(y, 0.006, 0.011)
        bump += 0.0022 * _g(x, side * 0.042, 0.014) * _g(y, -0.03, 0.013)
        disp += (bump * smoothstep(-0.1, 0.2, n[:, 2]))[:, None] * n
    # ears: a rounded flap around a shallow bowl, pushed out and a little backwards
    for side in (1.0, -1.0):
        c = EAR_CENTRE * [side, 1.0, 1.0]
        rho2 = ((y - c[1]) / 0.022) ** 2 + ((b[:, 2] - c[2]) / 0.0125) ** 2
        bowl2 = ((y - c[1] + 0.003) / 0.011) ** 2 + ((b[:, 2] - c[2] - 0.002) / 0.0055) ** 2
        h = 0.0125 * np.exp(-0.5 * rho2**1.5) - 0.0045 * np.exp(-0.5 * bowl2)
        h *= smoothstep(0.55, 0.8, side * n[:, 0])
        out = n + np.array([0.0, 0.0, -0.45])
        disp += h[:, None] * out / np.linalg.norm(out, axis=1, keepdims=True)
    # eye sockets: blend the face into a lid cap over the eyeball, recessed inside the opening
    z = b[:, 2] + disp[:, 2]
    for side in (1.0, -1.0):
        w, lid_z, ball_z = eye_region(b, side)
        w = w * front
        eye_z = np.where(opening, ball_z - opening_depth(fraction), lid_z)
        z_new = w * eye_z + (1.0 - w) * z
        disp[:, 2] += z_new - z
        z = z_new
    return disp


def eye_curves(x: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower lid margins y [N] of the eye on `side` at x [N], and the lateral
    in-opening factor [N] (0 at and beyond the corners)."""
    half_w, up, down = EYE_OPENING
    dx = x - side * EYE_CENTRE[0]
    lateral = np.clip(1.0 - (dx / half_w) ** 2, 0.0, 1.0)
    tilt = 0.0012 * side * np.clip(dx / half_w, -1, 1)  # the outer corner sits a little higher
    top = EYE_CENTRE[1] + tilt + up * lateral**0.75 + 0.00025
    bottom = EYE_CENTRE[1] + tilt - down * lateral**0.85 - 0.00025
    return top, bottom, lateral
