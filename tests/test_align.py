"""Alignment on reference markers, transforms, region crops through them, rotation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.align import Aligner, estimate_transform, map_geometry, region_crop, rotate, warp_to_reference
from device.config import AlignConfig, Marker
from device.errors import RegionError
from device.regions import Box, Quad, crop

W, H = 320, 240


def scene() -> np.ndarray:
    """Two fiducials and some 'digits' on a gradient."""
    img = np.tile(np.linspace(90, 140, W, dtype=np.float32), (H, 1)).astype(np.uint8)
    for x, y, notch in ((10, 10, 0), (W - 42, H - 42, 1)):
        img[y : y + 32, x : x + 32] = 0
        img[y + 5 : y + 27, x + 5 : x + 27] = 255
        img[y + 10 : y + 22, x + 10 : x + 22] = 0
        nx = x + (10 if notch else 16)
        img[y + 10 + (0 if notch else 6) : y + 16 + (0 if notch else 6), nx : nx + 6] = 255
    cv2.putText(img, "4711", (100, 140), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 3)
    return img


def shifted(img: np.ndarray, dx: float, dy: float, angle: float = 0.0) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((W / 2, H / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(img, matrix, (W, H), borderMode=cv2.BORDER_REPLICATE)


CFG = AlignConfig(enabled=True, markers=(Marker("a", Box(10, 10, 32, 32)), Marker("b", Box(W - 42, H - 42, 32, 32))),
                  search_px=16, min_score=0.7, min_markers=2)
DIGITS = Box(90, 100, 120, 50)


def test_markers_found_and_region_follows_a_shift():
    ref = scene()
    aligner = Aligner(CFG, reference=ref)
    frame = shifted(ref, 7, -5)
    result = aligner.locate(frame)
    assert result.ok and all(h.found and h.score > 0.95 for h in result.hits)
    assert result.matrix[0, 2] == pytest.approx(7, abs=0.6) and result.matrix[1, 2] == pytest.approx(-5, abs=0.6)
    aligned = region_crop(frame, DIGITS, matrix=result.matrix)
    unaligned = crop(frame, DIGITS)
    expected = crop(ref, DIGITS).astype(int)
    assert np.abs(aligned.astype(int) - expected).mean() < 1 < np.abs(unaligned.astype(int) - expected).mean()


def test_small_rotation_is_followed():
    ref = scene()
    frame = shifted(ref, 3, 2, angle=2.0)
    result = Aligner(CFG, reference=ref).locate(frame)
    assert result.ok
    restored = warp_to_reference(frame, result.matrix, W, H)
    diff = np.abs(crop(restored, DIGITS).astype(int) - crop(ref, DIGITS).astype(int)).mean()
    assert diff < 6


def test_markers_not_found_is_reported_not_raised():
    ref = scene()
    blank = np.full_like(ref, 128)
    result = Aligner(CFG, reference=ref).locate(blank)
    assert not result.ok and not any(h.found for h in result.hits)
    assert np.allclose(result.matrix, np.eye(3))


def test_flat_marker_patch_is_refused():
    cfg = AlignConfig(enabled=True, markers=(Marker("flat", Box(200, 20, 20, 20)),))
    with pytest.raises(RegionError, match="flat or empty"):
        Aligner(cfg, reference=np.full((H, W), 100, np.uint8))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_estimate_transform_recovers_known_motion(n):
    ref = np.array([[10, 10], [300, 20], [290, 220], [20, 230]], dtype=np.float64)[:n]
    true = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])
    moved = ref + [5.0, -3.0]
    assert np.allclose(estimate_transform(ref, moved), true, atol=1e-6)


def test_map_geometry_shifts_a_box_and_warps_otherwise():
    assert map_geometry(DIGITS, None) is DIGITS
    assert map_geometry(DIGITS, np.array([[1.0, 0, 2.2], [0, 1, 2.8], [0, 0, 1]])) == Box(92, 103, 120, 50)
    quad = map_geometry(DIGITS, np.array([[2.0, 0, 0], [0, 1, 3], [0, 0, 1]]))
    assert isinstance(quad, Quad) and quad.points[1] == (420.0, 103.0)


def test_rotate_exact_quarter_turns_and_free_angles():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert rotate(img, 0) is img
    assert np.array_equal(rotate(img, 90), np.rot90(img))
    assert np.array_equal(rotate(img, -90), np.rot90(img, 3))
    assert rotate(np.zeros((20, 100), np.uint8), 30).shape == (67, 97)  # grown to hold the turned crop


def test_rotated_region_reads_upright():
    """Text running up the image, cropped with rotation_deg = -90, comes out as a left-to-right line."""
    line = np.full((30, 120), 255, np.uint8)
    cv2.putText(line, "123", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2)
    frame = np.full((200, 200), 255, np.uint8)
    frame[40:160, 50:80] = np.rot90(line)  # turned counter-clockwise on the frame
    out = region_crop(frame, Box(50, 40, 30, 120), rotation_deg=-90)
    assert out.shape == (30, 120) and np.array_equal(out, line)
