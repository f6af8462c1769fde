"""The shared preprocessing equals DeepGuard's validation transform."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from msvit.errors import DataError
from msvit.preprocess import letterbox, load_image, normalize, preprocess, preprocess_batch


def test_matches_deepguard_letterbox_on_eval(faces_dir, reference):
    files = [faces_dir / "eval" / f for f in reference["files"]]
    got = np.stack([letterbox(load_image(f), 224) for f in files])
    np.testing.assert_array_equal(got, reference["u8"])
    x = preprocess_batch(files)
    assert x.shape == (83, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_array_equal(x, normalize(reference["u8"]))


@pytest.mark.parametrize("hw", [(300, 180), (97, 150), (224, 100), (640, 640)])
def test_matches_albumentations_on_resized_images(hw):
    A = pytest.importorskip("albumentations")
    import cv2

    rng = np.random.default_rng(sum(hw))
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    t = A.Compose([A.LongestMaxSize(max_size=224),
                   A.PadIfNeeded(min_height=224, min_width=224, border_mode=cv2.BORDER_CONSTANT, fill=0),
                   A.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    ref = t(image=img)["image"].transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(img, 224), ref, atol=1e-5)


def test_inputs_of_every_kind(tmp_path):
    arr = np.full((50, 100, 3), 200, np.uint8)
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    a, b, c = preprocess(arr, 384), preprocess(Image.fromarray(arr), 384), preprocess(p, 384)
    assert a.shape == (3, 384, 384)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_bad_inputs(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="cannot read image"):
        preprocess(bad)
    with pytest.raises(DataError, match="uint8"):
        preprocess(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(DataError, match="HxWx3"):
        letterbox(np.zeros((10, 10), np.uint8), 224)
