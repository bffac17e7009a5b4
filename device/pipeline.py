"""One frame through the stages: align -> crop each region -> preprocess -> recognise (-> lines, fields).

Shared by the daemon and ``edgeocr preview``; times each stage into a ``StageTimes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device.align import Aligner, Alignment, region_crop
from device.config import RegionConfig
from device.ctc import Read
from device.errors import EdgeOCRError
from device.textlines import TextRead, extract_fields, read_lines

logger = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Seconds spent per stage, summed, and how many times each ran."""

    total_s: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.total_s[stage] = self.total_s.get(stage, 0.0) + seconds
        self.count[stage] = self.count.get(stage, 0) + 1

    def mean_ms(self, stage: str) -> float:
        n = self.count.get(stage, 0)
        return 1000.0 * self.total_s.get(stage, 0.0) / n if n else 0.0


@dataclass(frozen=True)
class RegionResult:
    """What one region gave in one frame: the read (None if nothing), fields (text regions), lines, error."""

    name: str
    read: Read | None
    fields: dict[str, str] | None = None
    lines: TextRead | None = None
    error: str = ""


class _Split:
    """Preprocess and inference timed apart when the recognizer exposes ``card`` and ``read_input``."""

    def __init__(self, recognizer: Any, times: StageTimes):
        self.rec, self.times = recognizer, times
        self.split = hasattr(recognizer, "read_input") and hasattr(recognizer, "card")

    def read(self, crop: np.ndarray, allowed: str | None = None) -> Read:
        if not self.split:
            t0 = time.perf_counter()
            out = self.rec.read(crop, allowed)
            self.times.add("recognize", time.perf_counter() - t0)
            return out
        from device.preprocess import to_input

        t0 = time.perf_counter()
        model_input = to_input(crop, self.rec.card.input, self.rec.card.normalisation)
        t1 = time.perf_counter()
        out = self.rec.read_input(model_input, allowed)
        self.times.add("preprocess", t1 - t0)
        self.times.add("recognize", time.perf_counter() - t1)
        return out


def align_frame(aligner: Aligner | None, image: np.ndarray, times: StageTimes) -> Alignment | None:
    """Locate the markers (None when alignment is off)."""
    if aligner is None:
        return None
    t0 = time.perf_counter()
    result = aligner.locate(image)
    times.add("align", time.perf_counter() - t0)
    return result


def read_regions(image: np.ndarray, regions: Sequence[RegionConfig], recognizer: Any,
                 matrix: np.ndarray | None = None, times: StageTimes | None = None) -> list[RegionResult]:
    """Read every region of a frame; a region that fails (outside the frame after alignment, ...) gives no read."""
    times = times if times is not None else StageTimes()
    reader = _Split(recognizer, times)
    results = []
    for region in regions:
        t0 = time.perf_counter()
        try:
            crop = region_crop(image, region.geometry, region.rotation_deg, matrix, name=region.name)
        except EdgeOCRError as exc:
            logger.debug("%s: %s", region.name, exc)
            results.append(RegionResult(region.name, None, error=str(exc)))
            continue
        finally:
            times.add("crop", time.perf_counter() - t0)
        if region.kind == "text":
            lines = read_lines(crop, reader, region.chars, region.max_lines)
            found = extract_fields(lines.text, region.fields) if region.fields else ({}, True)
            read = lines.as_read() if lines.lines else None
            results.append(RegionResult(region.name, read, found[0] if found[1] else None, lines))
        else:
            results.append(RegionResult(region.name, reader.read(crop, region.chars)))
    return results
