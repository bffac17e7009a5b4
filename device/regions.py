"""Region geometry: an axis-aligned box or a 4-point quad, parsed, checked and cropped (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.errors import RegionError


@dataclass(frozen=True)
class Box:
    """Axis-aligned rectangle in pixels: top-left corner and size."""

    x: int
    y: int
    w: int
    h: int

    def corners(self) -> tuple[tuple[float, float], ...]:
        """Clockwise corners from top-left, as a quad would list them."""
        x0, y0, x1, y1 = self.x, self.y, self.x + self.w, self.y + self.h
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


@dataclass(frozen=True)
class Quad:
    """Four corners, clockwise from the top-left of the text: TL, TR, BR, BL."""

    points: tuple[tuple[float, float], ...]

    def corners(self) -> tuple[tuple[float, float], ...]:
        """The corners as given."""
        return self.points


Region = Box | Quad


def _numbers(text: str, count: int, what: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != count:
        raise RegionError(f"{what} {text!r}: expected {count} comma-separated numbers")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise RegionError(f"{what} {text!r}: expected {count} comma-separated numbers") from None


def parse_box(text: str) -> Box:
    """Parse ``X,Y,W,H`` (pixels; W and H > 0)."""
    x, y, w, h = _numbers(text, 4, "--box")
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise RegionError(f"--box {text!r}: expected X,Y >= 0 and W,H > 0")
    return Box(int(round(x)), int(round(y)), int(round(w)), int(round(h)))


def parse_quad(text: str) -> Quad:
    """Parse ``X1,Y1,X2,Y2,X3,Y3,X4,Y4`` (TL, TR, BR, BL)."""
    v = _numbers(text, 8, "--quad")
    quad = Quad(tuple((v[i], v[i + 1]) for i in range(0, 8, 2)))
    if quad_area(quad) < 4.0:
        raise RegionError(f"--quad {text!r}: expected four corners that enclose an area")
    return quad


def quad_area(region: Region) -> float:
    """Shoelace area of the region's corners."""
    pts = np.asarray(region.corners(), dtype=np.float64)
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def check_inside(region: Region, width: int, height: int, name: str = "region") -> None:
    """Raise ``RegionError`` unless every corner lies within a ``width x height`` image."""
    for px, py in region.corners():
        if px < 0 or py < 0 or px > width or py > height:
            raise RegionError(
                f"{name} {_describe(region)} lies outside the {width}x{height} image: "
                f"expected corners within 0..{width} x 0..{height}"
            )


def _describe(region: Region) -> str:
    if isinstance(region, Box):
        return f"box {region.x},{region.y},{region.w},{region.h}"
    return "quad " + ",".join(f"{x:g},{y:g}" for x, y in region.points)


def crop(image: np.ndarray, region: Region | None, name: str = "region") -> np.ndarray:
    """Cut a region out of an image: a box by slicing, a quad by a perspective warp to a rectangle."""
    if region is None:
        return image
    height, width = image.shape[:2]
    check_inside(region, width, height, name)
    if isinstance(region, Box):
        out = image[region.y : region.y + region.h, region.x : region.x + region.w]
        if out.size == 0:
            raise RegionError(f"{name} {_describe(region)}: empty crop")
        return out
    return warp_quad(image, region)


def warp_quad(image: np.ndarray, quad: Quad) -> np.ndarray:
    """Perspective-warp a quad to an upright rectangle sized by its longer opposite edges."""
    import cv2

    src = np.asarray(quad.points, dtype=np.float32)
    tl, tr, br, bl = src
    out_w = int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
    out_h = int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))))
    if out_w < 2 or out_h < 2:
        raise RegionError(f"{_describe(quad)}: too small to crop ({out_w}x{out_h} px)")
    dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1], [0, out_h - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
