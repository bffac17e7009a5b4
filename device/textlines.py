"""Multi-line text regions: find the lines in a crop (projection of ink, no extra model), read each one,
and extract named fields with regex groups into a JSON-ready dict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from device.ctc import Read
from device.regions import Box


class Reader(Protocol):
    """What ``read_lines`` needs from a recognizer."""

    def read(self, crop: np.ndarray, allowed: str | None = None) -> Read: ...


@dataclass(frozen=True)
class TextRead:
    """The lines of a text region; ``text`` joins them with newlines; confidence is the weakest line's."""

    lines: tuple[Read, ...]
    boxes: tuple[Box, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float:
        return min((line.confidence for line in self.lines), default=0.0)

    @property
    def char_confidences(self) -> tuple[float, ...]:
        return tuple(c for line in self.lines for c in line.char_confidences)

    def as_read(self) -> Read:
        """The whole region as one ``Read`` (what the tracker takes)."""
        return Read(self.text, self.confidence, self.char_confidences)


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean text mask: polarity normalised to dark text, Otsu split, border-touching frames and specks removed."""
    import cv2

    from device.preprocess import normalise_polarity, stretch_contrast

    gray = normalise_polarity(stretch_contrast(gray))
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    h, w = gray.shape
    keep = np.zeros(count, dtype=bool)
    for i in range(1, count):
        x, y, cw, ch, area = stats[i]
        frame_like = cw > 0.9 * w or ch > 0.9 * h  # label borders, rules, shadows
        keep[i] = area >= 3 and not frame_like
    return keep[labels]


def find_lines(gray: np.ndarray, max_lines: int = 8) -> list[Box]:
    """Boxes (crop coordinates) of the text lines, top to bottom, padded a little."""
    mask = ink_mask(gray)
    h, w = mask.shape
    rows = mask.any(axis=1)
    bands: list[list[int]] = []  # [top, bottom) per run of inked rows
    for y, inked in enumerate(rows):
        if inked and bands and bands[-1][1] == y:
            bands[-1][1] = y + 1
        elif inked:
            bands.append([y, y + 1])
    if not bands:
        return []
    bands = _merge_small(bands)
    boxes = []
    for top, bottom in bands[:max_lines]:
        bh = bottom - top
        cols = np.flatnonzero(mask[top:bottom].any(axis=0))
        pad_y, pad_x = max(2, int(0.2 * bh)), max(2, int(0.4 * bh))
        x0, x1 = max(0, int(cols[0]) - pad_x), min(w, int(cols[-1]) + 1 + pad_x)
        y0, y1 = max(0, top - pad_y), min(h, bottom + pad_y)
        boxes.append(Box(x0, y0, x1 - x0, y1 - y0))
    return boxes


def _merge_small(bands: list[list[int]]) -> list[list[int]]:
    """Join dots and accents to their line; drop specks far from any line."""
    heights = [b - t for t, b in bands]
    tall = float(np.median([h for h in heights if h >= 0.5 * max(heights)]))
    out: list[list[int]] = []
    for band in bands:
        small = band[1] - band[0] < 0.45 * tall
        if out and (small or out[-1][1] - out[-1][0] < 0.45 * tall) and band[0] - out[-1][1] < 0.35 * tall:
            out[-1][1] = band[1]
        else:
            out.append(list(band))
    return [b for b in out if b[1] - b[0] >= 0.45 * tall]


def read_lines(crop: np.ndarray, reader: Reader, allowed: str | None = None, max_lines: int = 8) -> TextRead:
    """Find the lines of a crop and recognise each one."""
    from device.preprocess import to_gray

    gray = to_gray(crop)
    boxes = find_lines(gray, max_lines)
    reads = [reader.read(gray[b.y : b.y + b.h, b.x : b.x + b.w], allowed) for b in boxes]
    return TextRead(tuple(reads), tuple(boxes))


def extract_fields(text: str, patterns: Sequence[str]) -> tuple[dict[str, str], bool]:
    """Search each regex in the text; merge their named groups. Returns (fields, every pattern matched)."""
    found: dict[str, str] = {}
    all_matched = True
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.MULTILINE)
        if match is None:
            all_matched = False
            continue
        found.update({k: v for k, v in match.groupdict().items() if v is not None})
    return found, all_matched
