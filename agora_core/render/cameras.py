"""Pinhole cameras in the EG3D/GGHEAD convention, and the FFHQ-like camera distribution.

World frame: FLAME canonical (docs/architecture.md) -- metres, +y up, +z towards the face's
front, +x to the head's left. A camera at +z looks at the face.

Camera frame: OpenCV -- x right, y down, z forward (into the scene). ``cam2world`` maps camera
coordinates to world coordinates. Intrinsics are normalised by the image size (EG3D): a point at
camera coordinates (x, y, z) lands at normalised image coordinates
``(fx * x / z + cx, fy * y / z + cy)`` in [0, 1]², i.e. at pixel ``(u * W, v * H)`` where pixel
(i, j) has its centre at (i + 0.5, j + 0.5) -- the gsplat convention.

With ``EG3D_FOCAL`` the full image spans ``1 / EG3D_FOCAL`` = 0.2345 of the distance to the
camera, so the EG3D radius 2.7 frames a 0.63 (world unit) tall region at the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EG3D_FOCAL = 4.2647  # normalised focal length of the EG3D/GGHEAD FFHQ cameras (fx = fy)
EG3D_RADIUS = 2.7  # camera distance to the look-at point in EG3D/GGHEAD FFHQ labels
# FFHQ-crop-like framing of a head in FLAME units (metres, unscaled): focal 4.2647 at 1.3 m sees a
# 0.30 m window, about crown-to-chin plus some hair and neck. Used by the synthetic dataset and by
# cameras derived from real photos, so both worlds frame heads alike.
FLAME_CAMERA_RADIUS = 1.3

# Mirror about the x = 0 plane (world x -> -x), as EG3D does for flipped FFHQ images.
_MIRROR = (-1.0, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Camera:
    """A batch of B pinhole cameras.

    Attributes:
        cam2world:  [B, 4, 4] rigid camera-to-world transforms (OpenCV camera axes).
        intrinsics: [B, 3, 3] intrinsics normalised by image width (row 0) and height (row 1).
    """

    cam2world: Tensor
    intrinsics: Tensor

    def __post_init__(self) -> None:
        b = self.cam2world.shape[0]
        assert self.cam2world.shape == (b, 4, 4), self.cam2world.shape
        assert self.intrinsics.shape == (b, 3, 3), self.intrinsics.shape

    # --- construction ---------------------------------------------------------------------------
    @staticmethod
    def from_label(label: Tensor) -> "Camera":
        """EG3D label [B, 25] (cam2world 4x4 row-major, then normalised K 3x3 row-major)."""
        assert label.ndim == 2 and label.shape[1] == 25, label.shape
        b = label.shape[0]
        return Camera(label[:, :16].reshape(b, 4, 4), label[:, 16:].reshape(b, 3, 3))

    def to_label(self) -> Tensor:
        """[B, 25] EG3D label."""
        b = self.batch_size
        return torch.cat([self.cam2world.reshape(b, 16), self.intrinsics.reshape(b, 9)], dim=1)

    @staticmethod
    def look_at(
        eye: Tensor,
        target: Tensor,
        up: tuple[float, float, float] = (0.0, 1.0, 0.0),
        focal: float = EG3D_FOCAL,
    ) -> "Camera":
        """Cameras at ``eye`` [B, 3] looking at ``target`` [B, 3], image-up along world ``up``.

        The camera's z axis points from eye to target and its y axis (image down) is the part of
        ``-up`` orthogonal to z, so ``up`` must not be parallel to the viewing direction.
        """
        b = eye.shape[0]
        assert eye.shape == (b, 3) and target.shape == (b, 3), (eye.shape, target.shape)
        up_t = torch.tensor(up, dtype=eye.dtype, device=eye.device).expand(b, 3)
        z = _normalise(target - eye)
        x = _normalise(torch.linalg.cross(z, up_t))  # right-handed: x = y × z with y ≈ -up
        y = torch.linalg.cross(z, x)
        cam2world = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(b, 1, 1)
        cam2world[:, :3, :3] = torch.stack([x, y, z], dim=-1)
        cam2world[:, :3, 3] = eye
        return Camera(cam2world, default_intrinsics(b, focal, dtype=eye.dtype, device=eye.device))

    # --- views ------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.cam2world.shape[0]

    @property
    def device(self) -> torch.device:
        return self.cam2world.device

    def world2cam(self) -> Tensor:
        """[B, 4, 4] inverse of ``cam2world`` (the gsplat "viewmat"), using rigidity: R^T, -R^T t."""
        rot_t = self.cam2world[:, :3, :3].transpose(1, 2)
        t = self.cam2world[:, :3, 3:]
        bottom = self.cam2world[:, 3:, :]
        return torch.cat([torch.cat([rot_t, -rot_t @ t], dim=2), bottom], dim=1)

    def position(self) -> Tensor:
        """[B, 3] camera centres in world coordinates."""
        return self.cam2world[:, :3, 3]

    def pixel_intrinsics(self, width: int, height: int) -> Tensor:
        """[B, 3, 3] intrinsics in pixels for a ``width`` x ``height`` image."""
        scale = torch.tensor([width, height, 1.0], dtype=self.intrinsics.dtype, device=self.device)
        return self.intrinsics * scale[None, :, None]

    def to(self, *args, **kwargs) -> "Camera":
        return Camera(self.cam2world.to(*args, **kwargs), self.intrinsics.to(*args, **kwargs))

    def select(self, batch_index: int | slice | Tensor) -> "Camera":
        """Sub-batch, keeping the batch dimension (int, slice or index tensor)."""
        idx = slice(batch_index, batch_index + 1) if isinstance(batch_index, int) else batch_index
        return Camera(self.cam2world[idx], self.intrinsics[idx])

    __getitem__ = select

    def expand(self, batch_size: int) -> "Camera":
        """Broadcast a single camera to ``batch_size`` cameras."""
        assert self.batch_size in (1, batch_size), (self.batch_size, batch_size)
        return Camera(
            self.cam2world.expand(batch_size, 4, 4), self.intrinsics.expand(batch_size, 3, 3)
        )

    @staticmethod
    def cat(cameras: list["Camera"]) -> "Camera":
        return Camera(
            torch.cat([c.cam2world for c in cameras]), torch.cat([c.intrinsics for c in cameras])
        )

    def mirror(self) -> "Camera":
        """The camera of the horizontally flipped image, world mirrored about x = 0 (EG3D).

        ``c2w' = M c2w M`` with M = diag(-1, 1, 1, 1): M on the left mirrors the world, on the
        right flips the camera's x axis back so the rotation stays proper (det +1). The principal
        point moves to ``1 - cx`` (a no-op for the centred EG3D cameras). An involution.
        """
        m = torch.tensor(_MIRROR, dtype=self.cam2world.dtype, device=self.device)
        cam2world = m[None, :, None] * self.cam2world * m[None, None, :]
        k = self.intrinsics.clone()
        k[:, 0, 2] = k[:, 2, 2] - k[:, 0, 2]  # 1 - cx (K[2, 2] is 1)
        k[:, 0, 1] = -k[:, 0, 1]
        return Camera(cam2world, k)


def default_intrinsics(
    batch_size: int,
    focal: float = EG3D_FOCAL,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """[B, 3, 3] normalised intrinsics with fx = fy = ``focal`` and a centred principal point."""
    k = torch.tensor(
        [[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]], dtype=dtype, device=device
    )
    return k.repeat(batch_size, 1, 1)


def sample_ffhq_like_cameras(
    n: int,
    generator: torch.Generator | None = None,
    radius: float = EG3D_RADIUS,
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
    yaw_std: float = 0.3,
    pitch_std: float = 0.15,
    yaw_max: float = 0.9,
    pitch_max: float = 0.5,
    focal: float = EG3D_FOCAL,
    device: torch.device | str | None = None,
) -> Camera:
    """``n`` cameras spread like the FFHQ pose distribution, looking at ``target``.

    Yaw ~ N(0, yaw_std) clipped to ±yaw_max (rotation about world +y; yaw 0 puts the camera at +z,
    in front of the face; positive yaw moves it towards +x), pitch ~ N(0, pitch_std) clipped to
    ±pitch_max (positive pitch raises the camera). The camera sits on the sphere of ``radius``
    around ``target``. The defaults are EG3D's (radius 2.7, focal 4.2647): a 0.63 m region is
    framed, so a FLAME head (~0.25 m tall, metres) fills ~40 % of the image height; pass a smaller
    ``radius`` (~1.3) for FFHQ-crop-like framing of a metric head without rescaling it.
    """
    noise = torch.randn(2, n, generator=generator, dtype=torch.float64)
    yaw = (noise[0] * yaw_std).clamp(-yaw_max, yaw_max)
    pitch = (noise[1] * pitch_std).clamp(-pitch_max, pitch_max)
    return orbit_cameras(yaw, pitch, radius, target, focal).to(device)


def orbit_cameras(
    yaw: Tensor,
    pitch: Tensor,
    radius: float = EG3D_RADIUS,
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
    focal: float = EG3D_FOCAL,
) -> Camera:
    """float32 cameras at angles ``yaw`` [B], ``pitch`` [B] (radians) on a sphere around ``target``."""
    assert yaw.shape == pitch.shape and yaw.ndim == 1, (yaw.shape, pitch.shape)
    yaw, pitch = yaw.double(), pitch.double()
    direction = torch.stack(
        [torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)],
        dim=1,
    )
    centre = torch.tensor(target, dtype=torch.float64).expand_as(direction)
    cams = Camera.look_at(centre + radius * direction, centre, focal=focal)
    return cams.to(torch.float32)


def _normalise(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True)


__all__ = [
    "Camera",
    "EG3D_FOCAL",
    "EG3D_RADIUS",
    "FLAME_CAMERA_RADIUS",
    "default_intrinsics",
    "orbit_cameras",
    "sample_ffhq_like_cameras",
]


DECA_Z0 = 2.28  # camera distance of the authors' DECA/SMIRK camera conversion (FLAME metres)


def deca_camera(cam: Tensor, pivot: Tensor, z0: float = DECA_Z0) -> Camera:
    """Pinhole cameras from a DECA/SMIRK weak-perspective camera, as the authors' model renders.

    The head stays fixed and the camera orbits the pivot (the posed FLAME root joint):
    R = Rodrigues(cam[:3]), world→camera rotation diag(1, −1, −1)·R (OpenCV axes), centre
    C = pivot − Rᵀ·pivot + z0·Rᵀ·e_z; normalised intrinsics fx = fy = s·z0/2, cx = (1 + s·tx)/2,
    cy = (1 − s·ty)/2.

    Args:
        cam: [B, 6] (axis-angle head rotation 3, s, tx, ty).
        pivot: [B, 3] world point the camera orbits.
    Returns:
        `Camera` of B cameras.
    """
    from agora_core.gaussians.quaternions import axis_angle_to_quat, quat_to_rotmat

    b = cam.shape[0]
    assert cam.shape == (b, 6) and pivot.shape == (b, 3), (cam.shape, pivot.shape)
    rot = quat_to_rotmat(axis_angle_to_quat(cam[:, :3]))  # [B, 3, 3]
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=cam.dtype, device=cam.device)
    r_cam = flip[None, :, None] * rot
    rt = rot.transpose(1, 2)
    centre = pivot - (rt @ pivot[:, :, None])[:, :, 0] + z0 * rt[:, :, 2]
    cam2world = torch.zeros(b, 4, 4, dtype=cam.dtype, device=cam.device)
    cam2world[:, :3, :3] = r_cam.transpose(1, 2)
    cam2world[:, :3, 3] = centre
    cam2world[:, 3, 3] = 1
    s, tx, ty = cam[:, 3], cam[:, 4], cam[:, 5]
    k = torch.zeros(b, 3, 3, dtype=cam.dtype, device=cam.device)
    k[:, 0, 0] = k[:, 1, 1] = 0.5 * s * z0
    k[:, 0, 2] = 0.5 + 0.5 * s * tx
    k[:, 1, 2] = 0.5 - 0.5 * s * ty
    k[:, 2, 2] = 1
    return Camera(cam2world, k)


def deca_mapping_label_of(cameras: "Camera") -> Tensor:
    """`deca_mapping_label` of the head rotation a camera realises: R = diag(1, −1, −1)·R_world→camera
    (the inverse of `deca_camera`'s rotation), so any render camera (an EG3D label from a photo's head
    pose, say) conditions the authors' mapping network as their DECA camera would. -> [B, 12]."""
    w2c = cameras.cam2world[:, :3, :3].transpose(1, 2)
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=w2c.dtype, device=w2c.device)
    rot = flip[None, :, None] * w2c
    return torch.cat([rot.reshape(-1, 9), rot.new_zeros(rot.shape[0], 3)], dim=1)


def deca_mapping_label(cam: Tensor) -> Tensor:
    """The authors' 12-float mapping label of a DECA camera: Rodrigues(cam[:3]) flattened row-major,
    then three zeros (s, tx, ty are not given to the mapping network). cam [B, 6] -> [B, 12]."""
    from agora_core.gaussians.quaternions import axis_angle_to_quat, quat_to_rotmat

    b = cam.shape[0]
    assert cam.shape == (b, 6), cam.shape
    rot = quat_to_rotmat(axis_angle_to_quat(cam[:, :3]))
    return torch.cat([rot.reshape(b, 9), cam.new_zeros(b, 3)], dim=1)
