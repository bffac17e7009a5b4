"""Pure image ops: region parsing/cropping and crop -> model input."""

import numpy as np
import pytest

from device.card import InputSpec, Normalisation
from device.errors import ImageError, RegionError
from device.preprocess import (fit_to_input, is_light_on_dark, load_image, percentiles_u8, stretch_contrast, to_gray,
                               to_input, to_pixels)
from device.regions import Box, Quad, crop, parse_box, parse_quad

SPEC = InputSpec(height=32, width=192)
NORM = Normalisation()


def _text_like(h: int = 40, w: int = 160, dark_on_light: bool = True) -> np.ndarray:
    img = np.full((h, w), 220, np.uint8)
    img[10:30, 20:30] = 20  # a dark "stroke"
    img[10:30, 60:70] = 20
    return img if dark_on_light else 255 - img


def test_parse_box_and_quad():
    assert parse_box("1,2,30,40") == Box(1, 2, 30, 40)
    quad = parse_quad("0,0,10,0,10,5,0,5")
    assert quad.points[2] == (10.0, 5.0)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,0,4", "-1,0,5,5", ""])
def test_parse_box_rejects(text):
    with pytest.raises(RegionError, match="--box"):
        parse_box(text)


@pytest.mark.parametrize("text", ["1,2,3,4", "0,0,0,0,0,0,0,0", "0,0,1,0,1,1,0,x"])
def test_parse_quad_rejects(text):
    with pytest.raises(RegionError, match="--quad"):
        parse_quad(text)


def test_crop_box_and_outside():
    img = np.arange(100 * 80, dtype=np.uint32).reshape(80, 100).astype(np.uint8)
    out = crop(img, Box(10, 20, 30, 15))
    assert out.shape == (15, 30) and out[0, 0] == img[20, 10]
    with pytest.raises(RegionError, match="outside the 100x80 image"):
        crop(img, Box(90, 0, 30, 10))


def test_crop_quad_rectifies_a_rotated_rectangle():
    import cv2

    img = np.zeros((200, 200), np.uint8)
    pts = np.array([[50, 60], [150, 80], [145, 105], [45, 85]], np.int32)
    cv2.fillPoly(img, [pts], 255)
    out = crop(img, Quad(tuple(map(tuple, pts.astype(float)))))
    assert 95 <= out.shape[1] <= 110 and 20 <= out.shape[0] <= 30
    assert out[3:-3, 3:-3].mean() > 240  # the whole warped area lies inside the filled quad


def test_polarity_is_normalised_to_dark_on_light():
    light_text = _text_like(dark_on_light=False)
    assert is_light_on_dark(light_text) and not is_light_on_dark(255 - light_text)
    a = to_pixels(_text_like(), SPEC, NORM)
    b = to_pixels(_text_like(dark_on_light=False), SPEC, NORM)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2


def test_fit_keeps_aspect_and_pads_with_ground():
    out = fit_to_input(_text_like(40, 80), 32, 192)
    assert out.shape == (32, 192)
    assert (out[:, 70:] == 220).all()  # 80 px wide at 40 high -> 64 px at 32 high, then ground
    wide = fit_to_input(np.full((10, 1000), 200, np.uint8), 32, 192)
    assert wide.shape == (32, 192)


def test_to_input_range_and_dtypes():
    for image in (_text_like(), np.dstack([_text_like()] * 3), _text_like().astype(np.uint16) * 256,
                  _text_like().astype(np.float32) / 255.0):
        x = to_input(image, SPEC, NORM)
        assert x.shape == (32, 192) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("bad", [np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros(5, np.uint8)])
def test_to_gray_rejects_odd_arrays(bad):
    with pytest.raises(ImageError):
        to_gray(bad)


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: empty file"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="text.png: not a decodable image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_histogram_percentiles_and_lookup_stretch_match_numpy():
    """The O(n) histogram path must give the same pixels as np.percentile + a per-pixel stretch."""
    rng = np.random.default_rng(0)
    for i in range(400):
        h, w = rng.integers(1, 90, 2)
        if i % 2:
            gray = rng.integers(0, 256, (h, w)).astype(np.uint8)
        else:
            gray = np.clip(rng.normal(rng.uniform(0, 255), rng.uniform(0, 50), (h, w)), 0, 255).astype(np.uint8)
        lo, hi = np.percentile(gray, (1.0, 99.0))
        assert percentiles_u8(gray, (1.0, 99.0)).tolist() == [lo, hi]
        want = gray if hi - lo < 8 else np.clip((gray.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        assert np.array_equal(stretch_contrast(gray), want)
