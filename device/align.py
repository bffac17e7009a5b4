"""Alignment and region cropping: reference markers found in each frame give a transform (reference ->
frame) so configured regions stay put when the camera or the meter shifts; rotation of a crop.

Pure functions over numpy arrays, except ``Aligner`` which holds the marker templates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from device.config import AlignConfig
from device.errors import ImageError, RegionError
from device.regions import Box, Quad, crop

logger = logging.getLogger(__name__)

IDENTITY = np.eye(3, dtype=np.float64)


def rotate(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """Turn an image counter-clockwise by ``angle_deg``: exact for multiples of 90, else on a grown canvas."""
    angle = angle_deg % 360.0
    if angle == 0:
        return image
    if angle % 90 == 0:
        return np.ascontiguousarray(np.rot90(image, k=int(angle // 90)))
    import cv2

    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    out_w, out_h = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    matrix[0, 2] += out_w / 2.0 - w / 2.0
    matrix[1, 2] += out_h / 2.0 - h / 2.0
    return cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def map_geometry(geometry: Box | Quad, matrix: np.ndarray | None) -> Box | Quad:
    """The region's corners in frame coordinates (a box stays a box under a pure shift)."""
    if matrix is None or np.allclose(matrix, IDENTITY):
        return geometry
    if isinstance(geometry, Box) and np.allclose(matrix[:2, :2], np.eye(2), atol=1e-3) and np.allclose(matrix[2], (0, 0, 1)):
        dx, dy = int(round(matrix[0, 2])), int(round(matrix[1, 2]))  # a shift: slice, no resampling
        return Box(geometry.x + dx, geometry.y + dy, geometry.w, geometry.h)
    pts = np.asarray(geometry.corners(), dtype=np.float64)
    homog = np.hstack([pts, np.ones((4, 1))]) @ matrix.T  # 4 x 3
    mapped = homog[:, :2] / homog[:, 2:3]
    return Quad(tuple((float(x), float(y)) for x, y in mapped))


def region_crop(image: np.ndarray, geometry: Box | Quad, rotation_deg: float = 0.0,
                matrix: np.ndarray | None = None, name: str = "region") -> np.ndarray:
    """Crop a configured region from a frame, through the alignment transform, then rotate it upright."""
    return rotate(crop(image, map_geometry(geometry, matrix), name=name), rotation_deg)


def estimate_transform(ref_pts: np.ndarray, frame_pts: np.ndarray) -> np.ndarray:
    """3x3 reference -> frame transform: translation (1 point), similarity (2), affine (3), homography (4+)."""
    import cv2

    ref_pts = np.asarray(ref_pts, dtype=np.float64).reshape(-1, 2)
    frame_pts = np.asarray(frame_pts, dtype=np.float64).reshape(-1, 2)
    n = len(ref_pts)
    if n == 0:
        return IDENTITY.copy()
    if n == 1:
        out = IDENTITY.copy()
        out[:2, 2] = frame_pts[0] - ref_pts[0]
        return out
    if n >= 4:
        matrix, _ = cv2.findHomography(ref_pts, frame_pts, 0)
        if matrix is not None:
            return matrix
    if n == 3:
        affine = cv2.getAffineTransform(ref_pts.astype(np.float32), frame_pts.astype(np.float32))
    else:
        affine, _ = cv2.estimateAffinePartial2D(ref_pts, frame_pts, method=cv2.LMEDS)
        if affine is None:
            return estimate_transform(ref_pts[:1], frame_pts[:1])
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def warp_to_reference(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """The whole frame resampled into reference coordinates (for previews; the daemon warps only the crops)."""
    import cv2

    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class MarkerHit:
    """Where one marker was found: centres in reference and frame coordinates, and the match score."""

    name: str
    ref_xy: tuple[float, float]
    frame_xy: tuple[float, float]
    score: float
    found: bool
    box: Box


@dataclass(frozen=True)
class Alignment:
    """The result for one frame; ``matrix`` maps reference -> frame coordinates."""

    matrix: np.ndarray
    hits: tuple[MarkerHit, ...]
    ok: bool


class Aligner:
    """Marker templates cut from the reference frame, searched near their reference place in each frame."""

    def __init__(self, cfg: AlignConfig, reference: np.ndarray | None = None):
        from device.preprocess import load_image, to_gray

        self.cfg = cfg
        ref = to_gray(reference if reference is not None else load_image(cfg.reference))
        self.templates = []
        for marker in cfg.markers:
            b = marker.box
            template = ref[b.y : b.y + b.h, b.x : b.x + b.w]
            if template.size == 0 or float(template.std()) < 2.0:
                raise RegionError(f"align marker {marker.name}: box {b.x},{b.y},{b.w},{b.h} is flat or empty "
                                  "in the reference image: expected a distinctive patch")
            self.templates.append((marker, np.ascontiguousarray(template)))

    def locate(self, frame: np.ndarray) -> Alignment:
        """Find the markers in a frame (gray or BGR) and estimate the reference -> frame transform."""
        import cv2

        from device.preprocess import to_gray

        gray = to_gray(frame)
        fh, fw = gray.shape
        hits = []
        for marker, template in self.templates:
            b, m = marker.box, self.cfg.search_px
            x0, y0 = max(0, b.x - m), max(0, b.y - m)
            x1, y1 = min(fw, b.x + b.w + m), min(fh, b.y + b.h + m)
            ref_c = (b.x + b.w / 2.0, b.y + b.h / 2.0)
            if x1 - x0 < b.w or y1 - y0 < b.h:
                hits.append(MarkerHit(marker.name, ref_c, ref_c, 0.0, False, b))
                continue
            scores = cv2.matchTemplate(gray[y0:y1, x0:x1], template, cv2.TM_CCOEFF_NORMED)
            _, score, _, (mx, my) = cv2.minMaxLoc(scores)
            score = float(np.nan_to_num(score))
            found_c = (x0 + mx + b.w / 2.0, y0 + my + b.h / 2.0)
            hits.append(MarkerHit(marker.name, ref_c, found_c, score, score >= self.cfg.min_score, b))
        good = [h for h in hits if h.found]
        if len(good) < self.cfg.min_markers:
            return Alignment(IDENTITY.copy(), tuple(hits), False)
        matrix = estimate_transform(np.array([h.ref_xy for h in good]), np.array([h.frame_xy for h in good]))
        if not np.all(np.isfinite(matrix)):
            return Alignment(IDENTITY.copy(), tuple(hits), False)
        return Alignment(matrix, tuple(hits), True)


def load_aligner(cfg: AlignConfig) -> Aligner | None:
    """An ``Aligner`` when alignment is enabled, else None."""
    if not cfg.enabled:
        return None
    try:
        return Aligner(cfg)
    except ImageError as exc:
        raise RegionError(f"align.reference: {exc}") from None
