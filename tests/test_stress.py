"""INT8's stress view (msvit.quantize.stress): the verification crops with contrast x1.5, and
how far they drive each quantization group past its calibrated range."""
from __future__ import annotations

import numpy as np

from msvit.preprocess import normalize
from msvit.quantize.stress import range_overrun, stress_view
from msvit.runtime.base import to_image_u8


def test_stress_view_stretches_contrast_on_the_pixels_and_is_exact_at_one(reference):
    x = normalize(reference["u8"][:6])
    same = stress_view(x, contrast=1.0)
    assert same.dtype == np.float32 and same.shape == x.shape
    np.testing.assert_array_equal(to_image_u8(same), to_image_u8(x))
    hi = to_image_u8(stress_view(x)).astype(np.float64)
    lo = to_image_u8(x).astype(np.float64)
    for a, b in zip(hi, lo):  # every crop's pixel spread grows; values stay 8-bit
        assert a.std() > 1.2 * b.std()
    assert hi.min() >= 0 and hi.max() <= 255


def test_range_overrun_is_zero_inside_the_range_and_names_groups_beyond_it(demo_model, reference):
    x = normalize(reference["u8"][:8])
    assert max(range_overrun(demo_model, x, x[:4]).values()) < 1e-4  # a subset: inside (batch rounding aside)
    over = range_overrun(demo_model, x, stress_view(x))
    assert "backbone.blocks.6" in over and "head" in over
    assert max(over.values()) > 0.1, over  # contrast x1.5 leaves some group's calibrated range
