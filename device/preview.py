"""``edgeocr preview``: one frame with the regions, the alignment markers and the readings drawn on it,
for an installer aiming the camera.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from device.align import Aligner, map_geometry
from device.config import Config
from device.errors import EdgeOCRError, ImageError
from device.pipeline import read_regions

logger = logging.getLogger(__name__)

GREEN, RED, BLUE, YELLOW = (40, 200, 40), (40, 40, 230), (230, 120, 30), (0, 220, 240)


def _poly(canvas: np.ndarray, corners: Any, colour: tuple[int, int, int], thickness: int, zoom: int = 1) -> None:
    import cv2

    pts = np.round(np.asarray(corners, dtype=np.float64) * zoom).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], isClosed=True, color=colour, thickness=thickness, lineType=cv2.LINE_AA)


def _label(canvas: np.ndarray, text: str, x: float, y: float, colour: tuple[int, int, int], scale: float,
           zoom: int = 1) -> None:
    import cv2

    org = (int(max(0, x * zoom)), int(min(canvas.shape[0] - 4, max(12, y * zoom))))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (max(2, min(org[0], canvas.shape[1] - w - 4)), org[1])
    cv2.rectangle(canvas, (org[0] - 2, org[1] - h - 3), (org[0] + w + 2, org[1] + base), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def annotate(cfg: Config, image: np.ndarray, recognizer: Any, aligner: Aligner | None = None) -> np.ndarray:
    """A BGR copy of the frame (twice the size when small) with markers (blue: reference place, green/red:
    found/missed), regions and reads."""
    import cv2

    from device.preprocess import to_gray

    canvas = cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] != 3 else image.copy()
    zoom = 2 if canvas.shape[1] < 800 else 1  # small frames are drawn at twice the size, for legible labels
    canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else canvas
    scale = max(0.45, canvas.shape[1] / 1600.0)
    thick = max(1, int(round(canvas.shape[1] / 640)))
    matrix = None
    if aligner is not None:
        alignment = aligner.locate(image)
        matrix = alignment.matrix if alignment.ok else None
        for hit in alignment.hits:
            _poly(canvas, hit.box.corners(), BLUE, 1, zoom)
            hw, hh = hit.box.w / 2.0, hit.box.h / 2.0
            fx, fy = hit.frame_xy
            _poly(canvas, ((fx - hw, fy - hh), (fx + hw, fy - hh), (fx + hw, fy + hh), (fx - hw, fy + hh)),
                  GREEN if hit.found else RED, thick, zoom)
            _label(canvas, f"{hit.name} {hit.score:.2f}", fx - hw, fy - hh - 4, GREEN if hit.found else RED, scale, zoom)
        if not alignment.ok:
            _label(canvas, "ALIGNMENT FAILED", 8, 24, RED, scale * 1.5, zoom)
    results = read_regions(image, cfg.regions, recognizer, matrix)
    for region, result in zip(cfg.regions, results):
        corners = map_geometry(region.geometry, matrix).corners()
        ok = result.read is not None and result.read.text != ""
        _poly(canvas, corners, GREEN if ok else RED, thick, zoom)
        x, y = min(c[0] for c in corners), min(c[1] for c in corners)
        if result.read is None:
            text = f"{region.name}: {result.error or 'no read'}"
        else:
            text = f"{region.name}: {result.read.text.replace(chr(10), ' | ')} ({result.read.confidence:.2f})"
        if result.fields:
            text += " " + " ".join(f"{k}={v}" for k, v in result.fields.items())
        _label(canvas, text, x, y - 4, YELLOW if ok else RED, scale, zoom)
    return canvas


def render_preview(cfg: Config, image: np.ndarray, recognizer: Any, aligner: Aligner | None, out: Path | str) -> np.ndarray:
    """Annotate a frame and write it (PNG/JPEG by suffix); raise OSError when it cannot be written."""
    import cv2

    canvas = annotate(cfg, image, recognizer, aligner)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), canvas):
        raise OSError(f"cannot write {out} (expected a .png or .jpg path)")
    return canvas


def grab_frame(cfg: Config, attempts: int = 10, timeout_s: float = 15.0) -> np.ndarray:
    """One good frame from the configured camera (a few tries; bad frames are skipped)."""
    from device.capture import Capture

    capture = Capture(cfg.camera)
    deadline = time.monotonic() + timeout_s
    try:
        for _ in range(attempts):
            frame = capture.read(time.monotonic())
            if frame is not None:
                return frame.image
            if capture.exhausted or time.monotonic() > deadline:
                break
            time.sleep(min(capture.retry_in_s(time.monotonic()), 1.0))
    finally:
        capture.close()
    raise ImageError(f"{capture.source.name}: no usable frame ({capture.last_error or 'no frames'})")


def preview(cfg: Config, out: Path | str, image_path: Path | str | None = None, recognizer: Any = None) -> np.ndarray:
    """The ``edgeocr preview`` command: one frame (from the camera, or ``image_path``) annotated into ``out``."""
    from device.align import load_aligner
    from device.capture import check_frame
    from device.preprocess import load_image

    if image_path is not None:
        image = check_frame(load_image(image_path), cfg.camera.width, cfg.camera.height)
    else:
        image = grab_frame(cfg)
    if recognizer is None:
        from device.recognize import Recognizer

        recognizer = Recognizer(cfg.recognizer.model or None, num_threads=cfg.recognizer.threads)
    try:
        return render_preview(cfg, image, recognizer, load_aligner(cfg.align), out)
    except OSError as exc:
        raise EdgeOCRError(str(exc)) from None
