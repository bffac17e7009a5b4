"""Multi-line text regions: lines found without a model, each read, named fields extracted."""

from __future__ import annotations

import numpy as np
import pytest
from daemon_helpers import ScriptedReader
from PIL import Image, ImageDraw, ImageFont

from device.textlines import extract_fields, find_lines, read_lines

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
LINES = ["PN AB-1234", "LOT 5678", "2024-05-17"]


def label(lines=LINES, size: int = 20, light_on_dark: bool = False, border: bool = True) -> tuple[np.ndarray, list]:
    """A label image and the true vertical extent of each line."""
    img = Image.new("L", (260, 40 + 34 * len(lines)), 240)
    draw = ImageDraw.Draw(img)
    if border:
        draw.rectangle([1, 1, img.width - 2, img.height - 2], outline=60, width=2)
    font = ImageFont.truetype(FONT, size)
    spans = []
    for i, text in enumerate(lines):
        y = 18 + 34 * i
        draw.text((16, y), text, font=font, fill=20)
        top, bottom = draw.textbbox((16, y), text, font=font)[1::2]
        spans.append((top, bottom))
    out = np.asarray(img)
    return (255 - out if light_on_dark else out), spans


@pytest.mark.parametrize("light_on_dark", [False, True])
def test_lines_found_top_to_bottom(light_on_dark):
    img, spans = label(light_on_dark=light_on_dark)
    boxes = find_lines(img)
    assert len(boxes) == 3
    for box, (top, bottom) in zip(boxes, spans):
        assert box.y <= top and box.y + box.h >= bottom  # the whole line is inside its box
        assert box.h < 34  # and only that line
        assert box.x > 3  # the label border is not part of a line


def test_dots_and_accents_stay_with_their_line():
    img, _ = label(["ij ji", "Lot 12"], size=22)
    assert len(find_lines(img)) == 2


def test_max_lines_and_empty_crop():
    img, _ = label()
    assert len(find_lines(img, max_lines=2)) == 2
    assert find_lines(np.full((60, 200), 230, np.uint8)) == []


def test_read_lines_reads_each_line_in_order():
    img, _ = label()
    reader = ScriptedReader([("PN AB-1234", 0.9), ("LOT 5678", 0.8), ("2024-05-17", 0.95)])
    result = read_lines(img, reader, allowed=None)
    assert result.text == "PN AB-1234\nLOT 5678\n2024-05-17"
    assert result.confidence == 0.8 and len(result.boxes) == 3
    assert all(shape[0] < 34 for shape in reader.shapes)  # one line per crop
    read = result.as_read()
    assert read.text == result.text and len(read.char_confidences) == len("PN AB-1234LOT 56782024-05-17")


def test_extract_fields_merges_named_groups():
    text = "PN AB-1234\nLOT 5678\n2024-05-17"
    fields, ok = extract_fields(text, [r"PN (?P<part>[A-Z0-9-]+)", r"LOT (?P<lot>\d+)", r"^(?P<date>\d{4}-\d\d-\d\d)$"])
    assert ok and fields == {"part": "AB-1234", "lot": "5678", "date": "2024-05-17"}
    fields, ok = extract_fields("PN AB-1234\nL0T 56", [r"PN (?P<part>\S+)", r"LOT (?P<lot>\d+)"])
    assert not ok and fields == {"part": "AB-1234"}
