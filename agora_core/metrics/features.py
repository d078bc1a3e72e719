"""FID and KID (paper sec. 4, Table 1) on Inception-v3 pool features.

The feature network is the TensorFlow Inception-v3 graph of 2015-12-05 that StyleGAN/EG3D (and
the AGORA authors' evaluation) use, read from a file the user gives -- never downloaded:
torch-fidelity's port ``weights-inception-2015-12-05-6726825d.pth`` (`INCEPTION_WEIGHTS_URL`), a
plain state dict (keys ``Conv2d_1a_3x3.conv.weight`` ... ``Mixed_7c.*``, ``fc.weight [1008, 2048]``)
run by torch-fidelity's ``FeatureExtractorInceptionV3`` (TF-compatible resize to 299², 2048-d pool
features). It is read with ``weights_only=True`` (`torch_files.read_torch_file`) and handed to the
network from memory, so torch-fidelity's own full-pickle ``torch.load`` never sees the user's file.
StyleGAN2-ADA's TorchScript ``inception-2015-12-05.pt`` and StyleGAN3/EG3D's ``.pkl`` hold the same
network but loading either runs code stored in the file, so both are refused.

A feature network is any callable ``images uint8 [B, 3, H, W] -> float [B, D]`` (`FeatureNetwork`);
tests plug in a small stand-in with that interface. The statistics are torch-fidelity's:
FID = ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), KID = unbiased MMD² with the cubic polynomial kernel
over random subsets (Bińkowski et al. 2018), mean and std over subsets.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import torch
from torch import Tensor

from agora_core.errors import AgoraError, check_finite, file_error
from agora_core.render.images import to_uint8

INCEPTION_FEATURES = "2048"  # pool3 features, as FID/KID use them
KID_SUBSETS = 100  # torch-fidelity / StyleGAN defaults
KID_SUBSET_SIZE = 1000
# a key every torch-fidelity Inception state dict has (sanity check before handing it over)
_INCEPTION_KEY = "Conv2d_1a_3x3.conv.weight"
INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth")
_INCEPTION_FIX = f"--inception wants torch-fidelity's weights-inception-2015-12-05-6726825d.pth ({INCEPTION_WEIGHTS_URL})"


class FeatureNetwork(Protocol):
    """``net(images uint8 [B, 3, H, W]) -> features float32 [B, D]``."""

    def __call__(self, images: Tensor) -> Tensor: ...


class _TorchFidelityInception:
    def __init__(self, weights: io.BytesIO, device: torch.device):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", [INCEPTION_FEATURES],
                                               feature_extractor_weights_path=weights).to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        return self.net(images.to(self.device))[0].float().cpu()


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> FeatureNetwork:
    """The Inception-v3 feature network from ``path`` (see module docstring); `AgoraError`
    naming the file and ``--inception`` when it is missing, TorchScript, a pickle, not the state
    dict, or holds NaN/inf."""
    from agora_core.torch_files import read_torch_file

    path, device = Path(path), torch.device(device)
    if path.suffix == ".pkl" and path.is_file():
        raise file_error(path, f"a pickled network is never loaded (unpickling runs code); {_INCEPTION_FIX}")
    state = read_torch_file(path, "Inception-v3 state dict", _INCEPTION_FIX)
    if not isinstance(state, dict) or _INCEPTION_KEY not in state:
        raise file_error(path, f"not torch-fidelity's Inception-v3 state dict; {_INCEPTION_FIX}")
    check_finite(state, path, "Inception weight")
    buffer = io.BytesIO()  # tensors only, re-serialised here: torch-fidelity unpickles this, not the file
    torch.save({k: v for k, v in state.items() if isinstance(v, Tensor)}, buffer)
    buffer.seek(0)
    try:
        return _TorchFidelityInception(buffer, device)
    except RuntimeError as exc:
        raise file_error(path, f"weights do not fit Inception-v3 ({str(exc).splitlines()[0][:120]}); "
                               f"{_INCEPTION_FIX}") from None


def extract_features(net: FeatureNetwork, batches: Iterable[Tensor], on_batch: Callable[[int], None] | None = None
                     ) -> Tensor:
    """Features [N, D] of image batches (uint8 [B, 3, H, W], or float in [0, 1])."""
    out = []
    for images in batches:
        if images.dtype != torch.uint8:
            images = to_uint8(images)
        assert images.ndim == 4 and images.shape[1] == 3, images.shape
        feats = net(images)
        assert feats.ndim == 2 and feats.shape[0] == images.shape[0], feats.shape
        out.append(feats.float().cpu())
        if on_batch is not None:
            on_batch(images.shape[0])
    return torch.cat(out)


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """FID between two feature sets [N, D], [M, D] (torch-fidelity's statistics)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    _check_features(real, fake, 2)
    stats = [fid_features_to_statistics(f.double()) for f in (real, fake)]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)[KEY_METRIC_FID])


def kid_from_features(real: Tensor, fake: Tensor, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                      seed: int = 0) -> tuple[float, float, int]:
    """KID (mean, std over subsets, subset size used) between feature sets [N, D], [M, D].

    The subset size is capped at the smaller set (needs >= 2 per set)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    _check_features(real, fake, 2)
    size = min(subset_size, real.shape[0], fake.shape[0])
    out = kid_features_to_metric(real.double(), fake.double(), kid_subsets=subsets, kid_subset_size=size,
                                 rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), size


def _check_features(a: Tensor, b: Tensor, minimum: int) -> None:
    assert a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1], (a.shape, b.shape)
    if min(a.shape[0], b.shape[0]) < minimum:
        raise AgoraError(f"FID/KID need at least {minimum} images per set, got {a.shape[0]} and {b.shape[0]}; raise --n")


def folder_batches(folder: str | Path, batch: int = 32) -> Iterable[Tensor]:
    """uint8 [B, 3, H, W] batches of the .png/.jpg images of a folder (sorted by name; all one size)."""
    import cv2

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise file_error(folder, "no .png/.jpg images")
    for i in range(0, len(files), batch):
        imgs = []
        for p in files[i : i + batch]:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise file_error(p, "not a decodable image")
            imgs.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        yield torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


def fid_between_folders(net: FeatureNetwork, folder_a: str | Path, folder_b: str | Path) -> float:
    """FID between two image folders (a check of the feature network and statistics)."""
    return fid_from_features(extract_features(net, folder_batches(folder_a)),
                             extract_features(net, folder_batches(folder_b)))


__all__ = [
    "FeatureNetwork",
    "extract_features",
    "fid_between_folders",
    "fid_from_features",
    "folder_batches",
    "kid_from_features",
    "load_inception",
    "to_uint8",
]
