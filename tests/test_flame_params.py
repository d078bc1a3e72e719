"""`head.flame_params`: the one FLAME-parameters type (construction checks, padding, indexing, dicts)."""

import numpy as np
import pytest
import torch

from agora_core.head import FLAME_KEYS, FlameParams, fit_coefficients


def _random(b: int = 3, s: int = 4, e: int = 5, seed: int = 0) -> FlameParams:
    g = torch.Generator().manual_seed(seed)
    r = lambda n: torch.randn(b, n, generator=g)  # noqa: E731
    return FlameParams(shape=r(s), expression=r(e), jaw=r(3), neck=r(3), eyes=r(6), eyelids=r(2))


def test_keyword_only_so_jaw_and_neck_cannot_swap():
    z = torch.zeros(2, 3)
    with pytest.raises(TypeError):
        FlameParams(torch.zeros(2, 5), z)  # positional: refused


@pytest.mark.parametrize("bad", [
    {"jaw": torch.zeros(2, 4)},  # jaw is [B, 3]
    {"eyes": torch.zeros(2, 3)},  # eyes are [B, 6]
    {"eyelids": torch.zeros(2, 3)},  # eyelids are [B, 2]
    {"neck": torch.zeros(3, 3)},  # batch 3 beside batch 2
    {"shape": torch.zeros(2)},  # not [B, S]
    {"expression": torch.zeros(2, 5, 1)},  # not [B, E]
])
def test_wrong_shapes_raise(bad):
    fields = {"expression": torch.zeros(2, 5), "jaw": torch.zeros(2, 3), **bad}
    with pytest.raises(AssertionError):
        FlameParams(**fields)


def test_left_out_fields_are_zeros():
    f = FlameParams(expression=torch.ones(2, 5, dtype=torch.float64), jaw=torch.ones(2, 3, dtype=torch.float64))
    assert f.shape.shape == (2, 0) and f.neck.shape == (2, 3) and f.eyes.shape == (2, 6) and f.eyelids.shape == (2, 2)
    assert not f.neck.any() and not f.eyes.any() and not f.eyelids.any()
    assert f.neck.dtype == torch.float64  # the expression's dtype


def test_zeros_sizes():
    f = FlameParams.zeros(4, n_shape=7, n_expr=9)
    assert f.batch_size == 4 and f.num_shape == 7 and f.num_expr == 9
    assert all(not v.any() for v in f.as_dict().values())


def test_padding_and_truncation_values():
    f = _random(s=4, e=5)
    longer = f.padded(n_shape=6, n_expr=8)
    assert longer.shape.shape == (3, 6) and longer.expression.shape == (3, 8)
    assert torch.equal(longer.shape[:, :4], f.shape) and not longer.shape[:, 4:].any()
    assert torch.equal(longer.expression[:, :5], f.expression) and not longer.expression[:, 5:].any()
    shorter = f.padded(n_shape=2, n_expr=3)
    assert torch.equal(shorter.shape, f.shape[:, :2]) and torch.equal(shorter.expression, f.expression[:, :3])
    assert torch.equal(shorter.jaw, f.jaw) and torch.equal(shorter.neck, f.neck)
    assert torch.equal(f.padded(n_expr=3).shape, f.shape)  # None keeps a width


def test_fit_coefficients_numpy_and_torch_agree():
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    for n in (1, 3, 5):
        np.testing.assert_array_equal(fit_coefficients(x, n), fit_coefficients(torch.from_numpy(x), n).numpy())
    assert fit_coefficients(x, 5).dtype == np.float64


def test_indexing_keeps_every_field_aligned():
    f = _random(b=5)
    rows = torch.tensor([4, 0, 2])
    picked = f[rows]
    for k in FLAME_KEYS:
        assert torch.equal(getattr(picked, k), getattr(f, k)[rows])
    one = f[3]
    assert one.batch_size == 1 and torch.equal(one.jaw, f.jaw[3:4])
    assert torch.equal(f[-1].eyes, f.eyes[4:5])
    assert torch.equal(f[1:3].neck, f.neck[1:3])
    with pytest.raises(IndexError):
        f[5]
    with pytest.raises(TypeError, match="not iterable"):
        dict(f)  # rows are not fields: iterating would otherwise never end


def test_dict_round_trip_and_batch_keys():
    f = _random()
    assert list(f.as_dict()) == list(FLAME_KEYS)
    back = FlameParams.from_dict({**{k: v.numpy() for k, v in f.as_dict().items()}, "image": np.zeros(1)})
    for k in FLAME_KEYS:
        assert torch.equal(getattr(back, k), getattr(f, k))
    rows = f.row_arrays(1)
    assert set(rows) == set(FLAME_KEYS) and all(v.ndim == 1 for v in rows.values())
    np.testing.assert_array_equal(rows["jaw"], f.jaw[1].numpy())
    partial = FlameParams.from_dict({"expression": np.ones((2, 4)), "jaw": np.ones((2, 3))})
    assert partial.expression.dtype == torch.float32 and not partial.eyelids.any()


def test_cat_pads_to_the_widest():
    a, b = _random(b=2, s=4, e=5), _random(b=1, s=2, e=7, seed=1)
    c = FlameParams.cat([a, b])
    assert c.batch_size == 3 and c.num_shape == 4 and c.num_expr == 7
    assert torch.equal(c.expression[:2, :5], a.expression) and not c.expression[:2, 5:].any()
    assert torch.equal(c.shape[2:, :2], b.shape) and torch.equal(c.jaw[2:], b.jaw)


def test_device_and_dtype_move_on_cpu():
    f = _random()
    g = f.to("cpu", torch.float64)
    assert g.device == torch.device("cpu") and all(v.dtype == torch.float64 for v in g.as_dict().values())
    torch.testing.assert_close(g.to(dtype=torch.float32).jaw, f.jaw, rtol=0, atol=0)  # f32 -> f64 -> f32 is exact


def test_fields_on_different_devices_raise():
    with pytest.raises(AssertionError):
        FlameParams(expression=torch.zeros(1, 5), jaw=torch.zeros(1, 3, device="meta"))


def test_replace_is_checked():
    f = _random()
    with pytest.raises(AssertionError):
        f.replace(jaw=torch.zeros(3, 6))
    assert torch.equal(f.replace(shape=None).shape, torch.zeros(3, 0))
