"""Draw the replay demo's frames: a panel with a seven-segment energy meter, a rolling counter, a small
temperature display, a two-line label, and two alignment markers; each frame is shifted a few pixels.

Run from the repository root: ``python firmware_config/samples/make_samples.py`` (needs pillow, opencv).
Writes ``firmware_config/samples/frames/*.png`` and ``firmware_config/samples/reference.png``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

W, H = 480, 320
HERE = Path(__file__).resolve().parent
SEG7 = "/usr/share/fonts/truetype/dseg/DSEG7Classic-Bold.ttf"
MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

# (energy, counter digits, roll fraction of the last digit, temperature) per frame
FRAMES = (
    [("01234.5", "004711", 0.0, "21.5")] * 4
    + [("01234.6", "004711", 0.0, "21.5")] * 2
    + [("01234.6", "004711", 0.45, "21.5")]
    + [("01234.6", "004712", 0.0, "21.5")]
    + [("01234.8", "004712", 0.0, "21.6")] * 4
    + [("01235.0", "004712", 0.0, "21.6")] * 4
)
SHIFTS = [(0, 0), (2, 1), (-2, 2), (3, -1), (1, -2), (-3, 0), (0, 3), (2, 2),
          (-1, -3), (3, 1), (-2, -1), (0, -2), (1, 3), (-3, 2), (2, -3), (0, 1)]


def marker(draw: ImageDraw.ImageDraw, x: int, y: int, kind: int) -> None:
    """A 32 x 32 fiducial: black square, white ring, black centre with a notch that tells the kinds apart."""
    draw.rectangle([x, y, x + 31, y + 31], fill=0)
    draw.rectangle([x + 5, y + 5, x + 26, y + 26], fill=255)
    draw.rectangle([x + 10, y + 10, x + 21, y + 21], fill=0)
    if kind:
        draw.rectangle([x + 10, y + 10, x + 15, y + 15], fill=255)
    else:
        draw.rectangle([x + 16, y + 16, x + 21, y + 21], fill=255)


def drums(draw: ImageDraw.ImageDraw, x: int, y: int, digits: str, roll: float) -> None:
    """White digits on black drums; the last drum rolled ``roll`` of the way to the next digit."""
    font = ImageFont.truetype(MONO, 36)
    cell_w, cell_h = 40, 48
    for i, d in enumerate(digits):
        cx = x + i * (cell_w + 2)
        cell = Image.new("L", (cell_w, cell_h * 3), 20)
        cdraw = ImageDraw.Draw(cell)
        last = i == len(digits) - 1
        for row, digit in enumerate((int(d), (int(d) + 1) % 10)):
            cdraw.text((cell_w // 2, cell_h * row + cell_h // 2), str(digit), font=font, fill=235, anchor="mm")
        top = int(round(roll * cell_h)) if last else 0
        draw._image.paste(cell.crop((0, top, cell_w, top + cell_h)), (cx, y))  # noqa: SLF001


def panel(energy: str, counter: str, roll: float, temp: str) -> np.ndarray:
    img = Image.new("L", (W, H), 0)
    gradient = np.tile(np.linspace(96, 128, W, dtype=np.float32), (H, 1))
    img = Image.fromarray(gradient.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    marker(draw, 12, 12, 0)
    marker(draw, W - 44, H - 44, 1)
    seg = ImageFont.truetype(SEG7, 48)
    draw.rectangle([60, 24, 380, 108], fill=205, outline=40, width=3)  # LCD window
    draw.text((366, 66), energy, font=seg, fill=25, anchor="rm")
    draw.rectangle([60, 124, 320, 190], fill=10)  # counter housing
    drums(draw, 66, 133, counter, roll)
    draw.rectangle([336, 124, 460, 190], fill=200, outline=40, width=3)
    draw.text((450, 157), temp, font=ImageFont.truetype(SEG7, 32), fill=30, anchor="rm")
    draw.rectangle([60, 204, 420, 300], fill=245, outline=170, width=2)  # label
    sans = ImageFont.truetype(SANS, 24)
    draw.text((74, 214), "PN AB-1234", font=sans, fill=15)
    draw.text((74, 256), "LOT 5678", font=sans, fill=15)
    return np.asarray(img)


def shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (W, H), borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    out = HERE / "frames"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    cv2.imwrite(str(HERE / "reference.png"), panel(*FRAMES[0]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    for i, (values, (dx, dy)) in enumerate(zip(FRAMES, SHIFTS)):
        cv2.imwrite(str(out / f"frame-{i:03d}.png"), shift(panel(*values), dx, dy), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
