"""MODNet matting through onnxruntime (agora_core.face.matting), with toy models in MODNet's
ONNX signature (input ``input`` (B,3,H,W), output ``output`` (B,1,H,W), dynamic axes)."""

from __future__ import annotations

import numpy as np
import pytest
from face_helpers import astronaut, toy_matte, write_mean_sigmoid_onnx
from tolerances import rounding_tol

from agora_core.errors import AgoraError
from agora_core.face.matting import ModnetMatter, composite_on_white, modnet_input_size, modnet_preprocess

# The toy model in float32 (onnxruntime) against its float64 formula: the scaling of the [-1, 1] input
# (2 roundings), the 3-channel mean (3), the sigmoid's exp, add and divide (3): 8 roundings of values <= 1.
MATTE_TOL = rounding_tol(np.float32, 1.0, steps=8)


@pytest.fixture(scope="module")
def matter(tmp_path_factory) -> ModnetMatter:
    return ModnetMatter(write_mean_sigmoid_onnx(tmp_path_factory.mktemp("modnet") / "toy_modnet.onnx"))


@pytest.mark.parametrize(
    "hw,expected",
    [
        ((512, 512), (512, 512)),  # neither all-smaller nor all-larger: kept
        ((300, 450), (512, 768)),  # both < 512: short side (h) -> 512, w = int(450/300*512)
        ((450, 300), (768, 512)),
        ((1000, 700), (704, 512)),  # both > 512: short side (w) -> 512, h = int(1000/700*512)=731 -> 704
        ((400, 1000), (384, 992)),  # mixed: kept, floored to multiples of 32
        ((600, 601), (512, 512)),  # w >= h: h -> 512, w = int(601/600*512) = 512
    ],
)
def test_input_size_follows_modnets_script(hw, expected):
    size = modnet_input_size(*hw)
    assert size == expected
    assert size[0] % 32 == 0 and size[1] % 32 == 0


def test_preprocess_range_and_layout():
    x = modnet_preprocess(astronaut()[:300, :450])
    assert x.dtype == np.float32 and x.shape == (1, 3, 512, 768)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_toy_model_matte_is_exact_without_resizing(matter):
    image = astronaut()  # 512²: MODNet runs at full size
    matte = matter(image)
    assert matte.shape == image.shape[:2] and matte.dtype == np.float32
    np.testing.assert_allclose(matte, toy_matte(image), rtol=0, atol=MATTE_TOL)


def test_toy_model_matte_after_resizing(matter):
    # a smooth image, so resizing to 768 x 512 and back changes the per-pixel value very little
    yy, xx = np.mgrid[0:300, 0:451].astype(np.float32)
    image = np.stack([xx * 0.5, yy * 0.8, 255 - xx * 0.4], axis=-1).round().astype(np.uint8)
    matte = matter(image)
    assert matte.shape == (300, 451)
    assert 0.0 <= matte.min() and matte.max() <= 1.0
    np.testing.assert_allclose(matte, toy_matte(image), atol=1e-3)  # measured 2.7e-4 (resampling)


def test_constant_image_gives_constant_matte(matter):
    image = np.full((123, 77, 3), 200, np.uint8)
    np.testing.assert_allclose(matter(image), 1 / (1 + np.exp(-(200 - 127.5) / 127.5)), rtol=0, atol=MATTE_TOL)


def test_composite_on_white():
    image = np.full((4, 4, 3), 10, np.uint8)
    matte = np.zeros((4, 4), np.float32)
    matte[:2] = 1.0
    matte[3] = 0.5
    out = composite_on_white(image, matte)
    assert out.dtype == np.uint8
    assert (out[:2] == 10).all() and (out[2] == 255).all() and (out[3] == 132).all()  # 0.5*10+127.5


def test_wrong_onnx_names_are_reported_with_the_file(tmp_path):
    path = write_mean_sigmoid_onnx(tmp_path / "other.onnx", input_name="img", output_name="alpha")
    with pytest.raises(AgoraError) as info:
        ModnetMatter(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "'input'" in message and "'output'" in message
    assert "\n" not in message


def test_not_an_onnx_file_is_reported_with_the_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"definitely not protobuf")
    with pytest.raises(AgoraError, match=r"broken\.onnx: not a loadable ONNX model"):
        ModnetMatter(path)


def test_missing_modnet_names_the_flag_and_the_source():
    with pytest.raises(AgoraError) as info:
        ModnetMatter.from_asset(None)
    message = str(info.value)
    assert "--modnet" in message and "github.com/ZHKKKe/MODNet" in message and "\n" not in message
