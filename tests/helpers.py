"""Shared test helpers: where the real DEV crops are, and a drawn seven-segment line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "edgeocr-crnn.tflite"


def real_root() -> Path | None:
    """The real labelled crops: $EDGEOCR_REAL_DATA, ../shared/data/real beside the checkout, or /work/shared."""
    for candidate in (os.environ.get("EDGEOCR_REAL_DATA"), ROOT.parent / "shared" / "data" / "real",
                      Path("/work/shared/data/real")):
        if candidate and Path(candidate, "manifest.tsv").is_file():
            return Path(candidate)
    return None


def draw_digits(text: str, height: int = 48) -> np.ndarray:
    """A clean DSEG7 rendering of ``text`` (dark on a light LCD-grey ground), BGR uint8."""
    from PIL import Image, ImageDraw, ImageFont

    font_path = next(Path("/usr/share/fonts/truetype/dseg").glob("DSEG7Classic-Bold.ttf"), None)
    font = ImageFont.truetype(str(font_path), int(height * 0.7))
    width = int(height * 0.62 * len(text)) + height
    image = Image.new("RGB", (width, height), (200, 205, 190))
    ImageDraw.Draw(image).text((height // 3, height // 7), text, font=font, fill=(30, 30, 30))
    return np.asarray(image)[:, :, ::-1].copy()
