"""No code from a user's file ever runs: every weights/data reader refuses a malicious pickle, a
pickled object array and a TorchScript archive with one `AgoraError` line, and the pickle's side
effect (creating a marker file) never happens."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from user_file_readers import READERS as ALL_READERS


class _CreatesMarker:
    """Unpickling this calls `open(marker, "w")`: the file appears iff the loader ran the pickle's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_torch_file(path: Path, marker: Path) -> Path:
    torch.save({"format": "agora-train-checkpoint", "format_version": 1, "G": _CreatesMarker(marker)}, path)
    return path


def _malicious_raw_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"weights": _CreatesMarker(marker)}, protocol=2))
    return path


class _Scripted(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


def _torchscript_archive(path: Path, marker: Path) -> Path:
    torch.jit.script(_Scripted()).save(str(path))
    return path


FILE_NAMES = {  # reader (user_file_readers.READERS) -> the file name it is given
    "checkpoint": "kimg000001.pt", "avatar": "avatar.pt", "export source": "avatar.pt",
    "fit-mlp state": "mlp.safetensors.state.pt", "vgg16": "vgg16.pth", "smirk": "SMIRK_em1.pt",
    "tracker": "tracker.pt", "inception": "weights-inception-2015-12-05-6726825d.pth",
    "flame pickle": "generic_model.pkl", "basis": "basis.safetensors", "mlp": "mlp.safetensors",
    "arcface": "w600k_r50.onnx", "modnet": "modnet.onnx",
}
READERS = {name: (ALL_READERS[name], file) for name, file in FILE_NAMES.items()}
MAKERS = {"torch.save pickle": _malicious_torch_file, "raw pickle": _malicious_raw_pickle,
          "TorchScript": _torchscript_archive}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch deprecates torch.jit.script
@pytest.mark.parametrize("maker", sorted(MAKERS))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_weights_reader_refuses_code_carrying_files_without_running_them(tmp_path, reader, maker):
    read, name = READERS[reader]
    marker = tmp_path / "marker"
    path = MAKERS[maker](tmp_path / name, marker)
    with mock.patch.object(torch.jit, "load", side_effect=AssertionError("torch.jit.load called")):
        with pytest.raises(AgoraError) as err:
            read(path)
    assert not marker.exists(), f"{reader} ran code from a {maker} file"
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "weights_only" not in message  # PyTorch's advice to unpickle everything is not repeated


def _object_array_npz(path: Path, marker: Path, keys: tuple[str, ...]) -> Path:
    with open(path, "wb") as f:  # np.savez pickles object arrays; only a pickle-allowing load would run it
        np.savez(f, **{k: np.array([_CreatesMarker(marker)], dtype=object) for k in keys})
    return path


def test_driving_npz_with_a_pickled_object_array_is_refused_without_running_it(tmp_path):
    from agora_core.reenact.driving import DrivingSequence

    marker = tmp_path / "marker"
    path = _object_array_npz(tmp_path / "driving.npz", marker, ("expression", "jaw"))
    with pytest.raises(AgoraError, match="driving.npz: .expression. holds Python objects"):
        DrivingSequence.load(path)
    assert not marker.exists()


def test_dataset_flame_npz_with_a_pickled_object_array_is_refused_without_running_it(tmp_path):
    from agora_core.data.format import FORMAT_NAME, FORMAT_VERSION, read_dataset_index

    marker = tmp_path / "marker"
    doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "num_images": 1, "resolution": 64,
           "labels": [["img00000000.png", [0.0] * 25]], "records": [{}]}
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    _object_array_npz(tmp_path / "flame.npz", marker, ("shape",))
    with pytest.raises(AgoraError, match="flame.npz: unreadable"):
        read_dataset_index(tmp_path)
    assert not marker.exists()


def test_eyelid_npy_with_a_pickled_object_array_is_refused_without_running_it(tmp_path):
    from agora_core.head.flame_io import load_eyelid_blendshapes

    marker = tmp_path / "marker"
    path = tmp_path / "eyelids.npy"
    np.save(path, np.array([_CreatesMarker(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(AgoraError, match="eyelids.npy: cannot read eyelid blendshapes"):
        load_eyelid_blendshapes(path)
    assert not marker.exists()
