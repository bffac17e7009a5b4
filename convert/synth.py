"""Synthetic training crops: 7/14-segment LCD/LED lines, rolling-drum counters, printed codes,
dot-matrix / inkjet codes and scene words, each with a camera-like degradation chain.

``render(rng)`` returns one ``Sample`` (image as a camera crop would deliver it, label, kind).
Generators draw a white-on-black text mask with PIL, colour it in numpy and hand a float BGR canvas
plus the text box to ``_finish`` (clutter, aspect, warp, crop margins, photometric degradations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convert import synth_degrade as dg
from convert.charset import CHARSET, DIGITS, UPPER
from convert.fonts import FontLibrary, default_library, get_font, pick

KINDS: tuple[str, ...] = ("seg7", "seg7_digit", "seg14", "drum", "drum_digit", "printed", "dotmatrix", "word")
DEFAULT_WEIGHTS: dict[str, float] = {"seg7": 0.24, "seg7_digit": 0.06, "seg14": 0.06, "drum": 0.14,
                                     "drum_digit": 0.10, "printed": 0.18, "dotmatrix": 0.10, "word": 0.12}
UNITS = ("kWh", "m3", "V", "A", "L", "kW", "MWh", "Hz", "W", "bar", "m3/h", "l/h", "kvarh", "mA", "C", "%")
AMBIGUOUS_ROLL = (0.35, 0.65)  # drum fractions between these are never labelled


@dataclass(frozen=True)
class Sample:
    """One synthetic crop: ``image`` uint8 gray HxW or BGR HxWx3, its ``text`` and the ``kind``."""

    image: np.ndarray
    text: str
    kind: str


# --------------------------------------------------------------------------------------------- helpers
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _rgb(rng: np.random.Generator, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    """A random colour between two RGB corners, returned as float BGR."""
    return rng.uniform(lo, hi).astype(np.float32)[::-1].copy()


def _canvas(h: int, w: int, colour: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(colour, np.float32), (h, w, 3)))


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Blend ``colour`` into ``img`` where ``mask`` (float 0..1, HxW) is set."""
    m = (mask * alpha)[..., None]
    return img * (1.0 - m) + colour * m


def _draw(size: tuple[int, int], items: list[tuple[tuple[float, float], str, object]],
          binary: bool = False) -> np.ndarray:
    """Draw ``(xy, text, font)`` items into an HxW float mask (size is (w, h))."""
    im = Image.new("L", size, 0)
    d = ImageDraw.Draw(im)
    if binary:
        d.fontmode = "1"
    for xy, text, font in items:
        d.text(xy, text, font=font, fill=255, features=_no_ligatures(font))
    return np.asarray(im, np.float32) / 255.0


def _no_ligatures(font: object) -> list[str] | None:
    """Font features that keep one glyph per character (the URW fonts draw "Nr." as one glyph, "№")."""
    return ["-liga", "-dlig", "-clig"] if getattr(font, "layout_engine", None) == ImageFont.Layout.RAQM else None


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask > 0.3)
    if len(xs) == 0:
        return 0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _contrasting(rng: np.random.Generator, min_delta: float = 90) -> tuple[np.ndarray, np.ndarray]:
    """Foreground / background BGR colours with a luminance gap of at least ``min_delta``."""
    bg = rng.uniform(0, 255, 3).astype(np.float32)
    lum = float(bg.mean())
    target = _u(rng, 0, max(lum - min_delta, 0)) if lum > 127 else _u(rng, min(lum + min_delta, 255), 255)
    fg = np.clip(target + rng.uniform(-40, 40, 3), 0, 255).astype(np.float32)
    return fg, bg


# --------------------------------------------------------------------------------- segment displays
_LCD = (  # (bg RGB lo, bg RGB hi, segment RGB lo, segment RGB hi)
    ((140, 150, 120), (185, 195, 160), (20, 30, 20), (60, 70, 55)),      # grey-green reflective
    ((160, 160, 160), (215, 215, 215), (20, 20, 20), (70, 70, 70)),      # grey reflective
    ((40, 190, 30), (150, 255, 130), (5, 40, 5), (40, 90, 40)),          # green backlight
    ((90, 160, 220), (170, 220, 255), (10, 20, 80), (60, 70, 150)),      # blue backlight
    ((220, 130, 30), (255, 200, 110), (60, 20, 5), (130, 60, 30)),       # amber / orange backlight
    ((200, 180, 160), (240, 225, 205), (70, 50, 50), (140, 110, 110)),   # beige, weak segments
    ((10, 20, 90), (40, 60, 160), (190, 210, 230), (255, 255, 255)),     # negative blue LCD
)
_LED = ((255, 30, 20), (40, 255, 80), (255, 160, 0), (60, 140, 255), (235, 235, 255), (255, 60, 40))


def _display_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """(background, segment colour, ghost alpha, is_led) for an LCD (75%) or LED (25%) panel."""
    if rng.random() < 0.25:
        seg = np.float32(_LED[int(rng.integers(len(_LED)))])[::-1] * _u(rng, 0.75, 1.0)
        bg = _rgb(rng, (0, 0, 0), (45, 40, 40))
        return bg, seg, _u(rng, 0.0, 0.12), True
    bl, bh_, sl, sh = _LCD[int(rng.integers(len(_LCD)))]
    bg, seg = _rgb(rng, bl, bh_), _rgb(rng, sl, sh)
    seg = bg + (seg - bg) * _u(rng, 0.45, 1.0)  # low contrast panels
    ghost = _u(rng, 0.07, 0.25) if rng.random() < 0.88 else 0.0
    return bg, seg, ghost, False


def _seg7_text(rng: np.random.Generator) -> tuple[str, str, str]:
    """(main display string, small decimal string, label). '!' = blank cell in DSEG."""
    n_int = int(rng.integers(1, 8))
    n_dec = int(rng.choice([0, 0, 1, 1, 2, 3])) if n_int < 9 else 0
    n_dec = min(n_dec, 9 - n_int)
    digits = "".join(DIGITS[i] for i in rng.integers(0, 10, n_int))
    leading = rng.random() < 0.5
    if not leading:
        digits = digits.lstrip("0") or "0"
        if n_dec and rng.random() < 0.3:
            digits = "0"
    minus = "-" if rng.random() < 0.07 and len(digits) < 8 else ""
    digits = (digits.lstrip("0") or "0") if minus else digits
    shown_int = minus + digits
    cells = max(len(shown_int), n_int + (int(rng.integers(0, 3)) if not leading else 0))
    blanks = "!" * (cells - len(shown_int))
    dec = "".join(DIGITS[i] for i in rng.integers(0, 10, n_dec))
    label = shown_int + ("." + dec if dec else "")
    return blanks + shown_int, dec, label


def seg7_layers(rng: np.random.Generator, fonts: FontLibrary, size: int, main: str, small: str,
                ghost_all_dp: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Lit mask, ghost mask (the unlit '8' cells) and ghost box of a DSEG7 line.

    ``main`` is drawn at ``size`` ('!' = blank cell), ``small`` decimals follow a point (unlit on a third of
    the panels whose decimals are drawn smaller: the label still has it)."""
    font = get_font(pick(rng, fonts.seg7), size)
    ratio = _u(rng, 0.55, 0.75) if small and rng.random() < 0.4 else 1.0
    sfont = get_font(font.path, max(int(size * ratio), 8))
    ghost_main = "".join("8." if ghost_all_dp else "8" for _ in main)
    pad = int(size * 0.9)
    w_main = font.getlength("8" * len(main))
    w_small = sfont.getlength("8" * len(small)) + (size * 0.15 if ratio < 1 else 0)
    w, h = int(w_main + w_small) + 2 * pad + 4, size + 2 * pad
    y_small = pad + (font.getbbox("8")[3] - sfont.getbbox("8")[3])
    # small decimals: on many panels the point between them and the integer part is barely visible or absent
    point = "." if small and (ratio == 1.0 or rng.random() < 0.65) else ""
    lit = [((pad, pad), main + point, font)]
    ghost = [((pad, pad), ghost_main, font)]
    if small:
        x = pad + w_main + (size * 0.15 if ratio < 1 else 0)
        lit.append(((x, y_small), small, sfont))
        ghost.append(((x, y_small), "8." * len(small) if ghost_all_dp else "8" * len(small), sfont))
    gm = _draw((w, h), ghost)
    box = _mask_box(gm)
    return _draw((w, h), lit), gm, box


def _unit_mask(rng: np.random.Generator, fonts: FontLibrary, shape: tuple[int, int],
               box: tuple[float, float, float, float]) -> tuple[np.ndarray, str, tuple[float, float, float, float]]:
    """A unit label ("kWh", "m3" ...) in a normal font right of ``box``; may widen the canvas."""
    unit = UNITS[int(rng.integers(len(UNITS)))]
    bh = box[3] - box[1]
    font = get_font(pick(rng, fonts.upright_sans), max(int(bh * _u(rng, 0.35, 0.6)), 9))
    x = box[2] + bh * _u(rng, 0.1, 0.35)
    l, t, r, b = font.getbbox(unit)
    y = box[1] - t if rng.random() < 0.5 else box[3] - b
    w = max(shape[1], int(x + r + bh))
    mask = _draw((w, shape[0]), [((x, y), unit, font)])
    return mask, unit, (box[0], box[1], float(x + r), box[3])


def _pad_to(a: np.ndarray, w: int) -> np.ndarray:
    return a if a.shape[1] >= w else np.pad(a, ((0, 0), (0, w - a.shape[1])))


def _compose_display(rng: np.random.Generator, lit: np.ndarray, ghost: np.ndarray,
                     ghost_scale: float = 1.0) -> np.ndarray:
    """Colour a segment display: background, faint unlit segments (ghost), lit segments, LED glow."""
    bg, seg, ghost_a, led = _display_colours(rng)
    img = _canvas(*lit.shape, bg)
    img = _paint(img, ghost, seg, ghost_a * ghost_scale)
    img = _paint(img, lit, seg)
    if led:  # glow
        img = img + cv2.GaussianBlur(lit, (0, 0), _u(rng, 1.0, 3.0))[..., None] * seg * _u(rng, 0.2, 0.6)
    elif rng.random() < 0.5:  # segment shadow on reflective LCDs
        d = max(1, int(lit.shape[0] * 0.02))
        img = _paint(img, np.roll(lit, (d, d), (0, 1)) * (1 - lit), seg, _u(rng, 0.1, 0.3))
    return img


def render_seg7(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    main, small, label = _seg7_text(rng)
    lit, ghost, box = seg7_layers(rng, fonts, int(rng.integers(24, 60)), main, small, rng.random() < 0.5)
    if rng.random() < 0.2:
        unit, name, box = _unit_mask(rng, fonts, lit.shape, box)
        lit, ghost = np.maximum(_pad_to(lit, unit.shape[1]), unit), _pad_to(ghost, unit.shape[1])
        label = f"{label} {name}"
    img = _compose_display(rng, lit, ghost)
    img = dg.finish(rng, img, box, margins=(0.0, 0.35, 0.0, 0.2), p_clutter=0.2)
    return img, label


def render_seg7_digit(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    a, d, b = (DIGITS[i] for i in rng.integers(0, 10, 3))
    dp = "." if rng.random() < 0.25 else ""
    size = int(rng.integers(36, 64))
    font = get_font(pick(rng, fonts.seg7), size)
    pad = size
    w, h = int(font.getlength("888")) + 2 * pad, size + 2 * pad
    lit = _draw((w, h), [((pad, pad), a + d + dp + b, font)])
    ghost = _draw((w, h), [((pad, pad), "8.8.8.", font)])
    x0, x1 = pad + font.getlength("8"), pad + font.getlength("88")
    _, t, _, bt = font.getbbox("8")
    img = _compose_display(rng, lit, ghost)
    img = dg.finish(rng, img, (x0, pad + t, x1, pad + bt), margins=(-0.02, 0.12, 0.03, 0.25), p_clutter=0.0,
                  geometry=0.7)
    return img, d


_SEG14_WORDS = ("ERROR", "ERR", "ON", "OFF", "SET", "TEMP", "AUTO", "HI", "LO", "RUN", "STOP", "OPEN", "CLOSE",
                "ALARM", "FLOW", "PUMP", "MODE", "TOTAL", "PRES", "LEVEL", "RATE", "CAL", "FAIL", "OK", "READY")


def _seg14_text(rng: np.random.Generator) -> str:
    r = rng.random()
    alnum = DIGITS + UPPER
    if r < 0.35:
        parts = [_SEG14_WORDS[int(rng.integers(len(_SEG14_WORDS)))]]
        if rng.random() < 0.6:
            parts.append("".join(alnum[i] for i in rng.integers(0, 36, int(rng.integers(1, 5)))))
        return " ".join(parts)
    if r < 0.55:
        return f"{''.join(UPPER[i] for i in rng.integers(0, 26, 2))}-{int(rng.integers(0, 1000)):03d}"
    if r < 0.7:
        return f"{int(rng.integers(0, 100))}.{int(rng.integers(0, 10))}{'CFV'[int(rng.integers(3))]}"
    chars = alnum + "-+/*'"
    s = "".join(chars[i] for i in rng.integers(0, len(chars), int(rng.integers(1, 11))))
    return s


def render_seg14(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    label = _seg14_text(rng)
    size = int(rng.integers(24, 56))
    font = get_font(pick(rng, fonts.seg14), size)
    shown = label.replace(" ", "!")
    cells = len(shown.replace(".", ""))
    pad = size
    w, h = int(font.getlength("~" * cells)) + 2 * pad, size + 2 * pad
    lit = _draw((w, h), [((pad, pad), shown, font)])
    ghost = _draw((w, h), [((pad, pad), "~" * cells, font)])
    img = _compose_display(rng, lit, ghost, ghost_scale=0.6)  # 14 segments: a denser ghost
    img = dg.finish(rng, img, _mask_box(ghost), margins=(0.0, 0.4, 0.0, 0.25), p_clutter=0.2)
    return img, label


# ---------------------------------------------------------------------------------- rolling drums
def sample_roll(rng: np.random.Generator, p_roll: float = 0.35) -> float:
    """Drum position v in [0, 10): label digit round(v) % 10; the fraction never lies in AMBIGUOUS_ROLL."""
    digit = int(rng.integers(0, 10))
    if rng.random() < p_roll:
        off = _u(rng, 0.08, 1 - AMBIGUOUS_ROLL[1]) * (1 if rng.random() < 0.5 else -1)
    else:
        off = float(np.clip(rng.normal(0, 0.03), -0.08, 0.08))
    return (digit + off) % 10.0


def drum_label(v: float) -> str:
    """The digit occupying the larger part of a drum window at position ``v``."""
    return str(int(np.floor(v + 0.5)) % 10)


def drum_window_mask(font: object, v: float, win_w: int, win_h: int, pitch: float) -> np.ndarray:
    """Digits of a drum at position ``v`` seen through a ``win_w`` x ``win_h`` window (float mask).

    Digit ``floor(v)`` is centred when the fraction is 0; as it grows the strip moves up and
    the next digit (9 -> 0) enters from below. ``pitch`` is the distance between digit centres."""
    d, frac = int(np.floor(v)), v - np.floor(v)
    items = []
    for k in (-1, 0, 1, 2):
        ch = str((d + k) % 10)
        l, t, r, b = font.getbbox(ch)
        cy = win_h / 2 + (k - frac) * pitch
        if cy + (b - t) / 2 < 0 or cy - (b - t) / 2 > win_h:
            continue
        items.append(((win_w / 2 - (l + r) / 2, cy - (t + b) / 2), ch, font))
    return _draw((win_w, win_h), items)


def _drum_row(rng: np.random.Generator, fonts: FontLibrary, n: int, digit_h: int) -> tuple[np.ndarray, str, tuple]:
    """A counter row of ``n`` drum windows on a housing; returns (canvas, label, box of the windows)."""
    font = get_font(pick(rng, fonts.upright_sans if rng.random() < 0.85 else fonts.mono), int(digit_h * 1.35))
    _, t, _, b = font.getbbox("0")
    gh = b - t
    win_h = int(gh * _u(rng, 1.3, 1.9))
    win_w = int(max(font.getlength("0") * _u(rng, 1.1, 1.5), gh * 0.6))
    pitch = gh * _u(rng, 1.2, 1.55)
    gap = int(win_w * (_u(rng, 0.08, 0.45) if n > 1 else 0))
    pad = int(win_h * 0.8)
    W, H = n * win_w + (n - 1) * gap + 2 * pad, win_h + 2 * pad
    housing = rng.uniform(10, 240) * np.ones(3, np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    img = _canvas(H, W, housing)
    light = rng.random() < 0.45
    drum_bg = _rgb(rng, (200, 200, 190), (250, 250, 245)) if light else _rgb(rng, (15, 15, 15), (75, 75, 75))
    ink = _rgb(rng, (0, 0, 0), (50, 50, 50)) if light else _rgb(rng, (200, 200, 200), (255, 255, 255))
    n_red = int(rng.integers(1, 4)) if n > 3 and rng.random() < 0.3 else 0
    red_bg, red_ink = _rgb(rng, (150, 10, 10), (220, 50, 50)), _rgb(rng, (220, 220, 220), (255, 255, 255))
    yy = np.linspace(-1, 1, win_h, dtype=np.float32)
    shade = (1 - _u(rng, 0.15, 0.6) * yy ** 2)[:, None, None]
    label = ""
    for i in range(n):
        v = sample_roll(rng)
        label += drum_label(v)
        m = drum_window_mask(font, v, win_w, win_h, pitch)
        bg_c, fg_c = (red_bg, red_ink) if i >= n - n_red else (drum_bg, ink)
        if i >= n - n_red and rng.random() < 0.4:  # red digits on white instead
            bg_c, fg_c = drum_bg if light else red_ink, red_bg
        win = _paint(_canvas(win_h, win_w, bg_c), m, fg_c) * shade
        x = pad + i * (win_w + gap)
        img[pad:pad + win_h, x:x + win_w] = win
        if rng.random() < 0.5:
            cv2.rectangle(img, (x - 1, pad - 1), (x + win_w, pad + win_h), tuple(float(c) * 0.5 for c in housing), 1)
    if rng.random() < 0.3:  # plastic cover reflection band
        y = int(rng.integers(pad, pad + win_h))
        img[y:y + max(1, win_h // 8)] = img[y:y + max(1, win_h // 8)] * 0.5 + 127
    box = (float(pad), float(pad), float(W - pad), float(pad + win_h))
    return img, label, box


def render_drum(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    img, label, box = _drum_row(rng, fonts, int(rng.integers(4, 9)), int(rng.integers(18, 40)))
    return dg.finish(rng, img, box, margins=(0.0, 0.3, -0.05, 0.3), p_clutter=0.3), label


def render_drum_digit(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    img, label, box = _drum_row(rng, fonts, 1, int(rng.integers(24, 48)))
    prof = dg.Profile(strength=1.15, blur=1.3, allow_invert=False, p_clean=0.05)
    return dg.finish(rng, img, box, profile=prof, margins=(-0.05, 0.15, -0.1, 0.1), p_clutter=0.0,
                   geometry=0.6), label


# ------------------------------------------------------------------------------- printed text
_TEMPLATES = ("LOT {A}{d4}-{d2}", "P/N {d4}-{d2}{A}", "EXP {Y}-{M}-{D}", "SN: {X4}-{d4}", "BATCH {d2}/{d3}",
              "REF {d3}.{d2}", "{X8}", "{X12}", "{X5}", "MFG {D}.{M}.{Y}", "{D}/{M}/{y}", "BEST BEFORE {D} {MON} {Y}",
              "QTY: {d2}", "#{d6}", "Art.-Nr. {d5}", "Ser. No. {X6}", "Type {A3}-{d2}", "{d3}V 50Hz", "IP{d2}",
              "Rev. {A}", "({d2}){d14}", "{d2}:{d2}", "Lot: {x6}", "W/O #{d4}", "{d2}V DC {d}.{d}A", "{A2}{d6}",
              "S/N {X10}", "LOT{d5} EXP{M}/{y}", "Made in {W}", "{W} {d3}-{d2}", "MAX {d3} kg", "CODE={X6}")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_COUNTRIES = ("Germany", "China", "Italy", "Japan", "Poland", "Korea", "Mexico", "Taiwan", "France", "USA")


def fill_template(rng: np.random.Generator, template: str) -> str:
    """Expand ``{d4}`` digits, ``{A2}`` capitals, ``{X6}``/``{x6}`` alnum, dates ``{Y} {y} {M} {D} {MON}``."""

    def rep(m: re.Match) -> str:
        key, n = m.group(1), int(m.group(2) or 1)
        pools = {"d": DIGITS, "A": UPPER, "X": DIGITS + UPPER, "x": DIGITS + UPPER + DIGITS}
        if key in pools:
            return "".join(pools[key][i] for i in rng.integers(0, len(pools[key]), n))
        return {"Y": f"{rng.integers(2019, 2035)}", "y": f"{rng.integers(19, 35)}", "M": f"{rng.integers(1, 13):02d}",
                "D": f"{rng.integers(1, 29):02d}", "MON": _MONTHS[int(rng.integers(12))],
                "W": _COUNTRIES[int(rng.integers(len(_COUNTRIES)))]}[key]

    return re.sub(r"\{(MON|[dAXxYyMDW])(\d*)\}", rep, template)


def _text_mask(font: object, text: str, tracking: float = 0.0) -> np.ndarray:
    """Text drawn with ``tracking`` extra em between characters, with a margin of one text height."""
    size = font.size
    adv = [font.getlength(c) + tracking * size for c in text]
    pad = int(size * 0.9)
    w, h = int(sum(adv)) + 2 * pad, int(size * 1.3) + 2 * pad
    if tracking == 0.0:
        return _draw((w, h), [((pad, pad), text, font)])
    xs = np.concatenate([[0.0], np.cumsum(adv)[:-1]]) + pad
    return _draw((w, h), [((float(x), pad), c, font) for x, c in zip(xs, text)])


def render_printed(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    label = fill_template(rng, _TEMPLATES[int(rng.integers(len(_TEMPLATES)))])
    font = get_font(pick(rng, fonts.text), int(rng.integers(22, 52)))
    mask = _text_mask(font, label, _u(rng, 0.0, 0.15) if rng.random() < 0.3 else 0.0)
    box = _mask_box(mask)
    h, w = mask.shape
    style = rng.random()
    if style < 0.3:  # thermal print: faded, streaks along the feed direction
        ink, bg = _rgb(rng, (10, 10, 10), (110, 110, 110)), _rgb(rng, (215, 215, 210), (250, 250, 250))
        streak = 1 - (rng.random(w if rng.random() < 0.5 else h) < 0.04) * _u(rng, 0.4, 1.0)
        mask = mask * (streak[None, :] if streak.size == w else streak[:, None])
        mask = mask * (1 - 0.5 * dg.smooth_field(rng, h, w, (2, 5)) * _u(rng, 0, 1))
    elif style < 0.55:  # sticker on a coloured product
        ink, bg = _rgb(rng, (0, 0, 0), (60, 60, 60)), _rgb(rng, (220, 210, 120), (255, 255, 255))
        outer = rng.uniform(0, 255, 3).astype(np.float32)
        img = _canvas(h, w, outer)
        g = rng.uniform(0.1, 0.5, 4) * (box[3] - box[1])
        x0, y0, x1, y1 = int(box[0] - g[0]), int(box[1] - g[1]), int(box[2] + g[2]), int(box[3] + g[3])
        img[max(y0, 0):y1, max(x0, 0):x1] = bg
        return dg.finish(rng, _paint(img, mask, ink), box, p_clutter=0.0), label
    elif style < 0.7:  # cardboard flexo print
        ink, bg = _rgb(rng, (0, 0, 0), (70, 50, 40)), _rgb(rng, (150, 110, 70), (210, 170, 120))
        mask = cv2.GaussianBlur(mask, (0, 0), 0.6) * _u(rng, 0.7, 1.0)
    else:
        ink, bg = _contrasting(rng)
    img = _canvas(h, w, bg)
    if rng.random() < 0.3:  # paper / metal texture
        cells = (int(rng.integers(2, 20)), int(rng.integers(2, 40)))
        img = img * (0.85 + 0.15 * dg.smooth_field(rng, h, w, cells))[..., None]
    return dg.finish(rng, _paint(img, mask, ink), box), label


# ---------------------------------------------------------------------------------- dot matrix
_DOT_SURFACES = (((215, 215, 210), (0, 0, 0)), ((200, 160, 110), (20, 20, 30)), ((160, 165, 170), (10, 10, 20)),
                 ((215, 215, 210), (10, 20, 90)), ((20, 20, 25), (220, 220, 215)), ((60, 20, 20), (215, 200, 60)))


def _dotmatrix_text(rng: np.random.Generator) -> str:
    t = ("{D}.{M}.{Y}", "EXP {M}/{y}", "{d2}:{d2}", "L{d4} {A}", "BB {D} {MON} {y}", "{D}{MON}{y} {d2}:{d2}",
         "LOT {X6}", "{X4} {X4}", "{D}/{M}/{y} L{d3}", "{d2}:{d2} {A}{d2}", "BEST BY {D}.{M}.{y}", "{X8}")
    return fill_template(rng, t[int(rng.integers(len(t)))])


def dot_grid(rng: np.random.Generator, fonts: FontLibrary, text: str) -> np.ndarray:
    """Binary (0/1) pixel grid of ``text`` at a few-pixel glyph height: the dot positions."""
    if fonts.dot and rng.random() < 0.75:
        path = pick(rng, fonts.dot)
        size = int(rng.integers(11, 15)) if "Terminus" in path else int(rng.integers(11, 14))
    else:
        path, size = pick(rng, fonts.mono), int(rng.integers(9, 12))
    font = get_font(path, size)
    w, h = int(font.getlength(text, features=_no_ligatures(font))) + 4, size + 4
    g = _draw((w, h), [((2, 1), text, font)], binary=True)
    ys, xs = np.nonzero(g)
    return g[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(xs) else g


def render_dotmatrix(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    label = _dotmatrix_text(rng)
    grid = dot_grid(rng, fonts, label)
    p = int(rng.integers(3, 6))
    sx = _u(rng, 1.0, 1.6) if rng.random() < 0.3 else 1.0  # printers often stretch columns
    gh, gw = grid.shape
    pad = gh * p
    H, W = gh * p + 2 * pad, int(gw * p * sx) + 2 * pad
    inkjet = rng.random() < 0.6
    ys, xs = np.nonzero(grid)
    cy = pad + (ys + 0.5) * p + (rng.normal(0, 0.12 * p, len(ys)) if inkjet else 0)
    cx = pad + (xs + 0.5) * p * sx + (rng.normal(0, 0.12 * p, len(xs)) if inkjet else 0)
    keep = rng.random(len(ys)) > (0.04 if inkjet else 0.0)
    dots = np.zeros((H, W), np.float32)
    np.add.at(dots, (np.clip(cy[keep].astype(int), 0, H - 1), np.clip(cx[keep].astype(int), 0, W - 1)),
              rng.uniform(0.6, 1.0, int(keep.sum())).astype(np.float32) if inkjet else 1.0)
    r = p * _u(rng, 0.3, 0.5)
    k = int(np.ceil(r)) * 2 + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)).astype(np.float32)
    mask = np.clip(cv2.filter2D(dots, -1, disk), 0, 1)
    if inkjet:
        mask = np.clip(cv2.GaussianBlur(mask, (0, 0), r * 0.4) * 1.3, 0, 1)
    box = (float(pad), float(pad), float(W - pad), float(H - pad))
    if rng.random() < 0.2:  # LED matrix sign: unlit dots faintly visible
        seg = np.float32(_LED[int(rng.integers(len(_LED)))])[::-1]
        full = np.zeros((H, W), np.float32)
        gy, gx = np.mgrid[0:gh, 0:gw]
        full[(pad + (gy + 0.5) * p).astype(int), (pad + (gx + 0.5) * p * sx).astype(int)] = 1
        unlit = cv2.filter2D(full, -1, disk).clip(0, 1)
        img = _paint(_canvas(H, W, _rgb(rng, (0, 0, 0), (30, 30, 30))), unlit, seg, 0.1)
        return dg.finish(rng, _paint(img, mask, seg), box), label
    if rng.random() < 0.6:  # black / blue ink on white, cardboard, silver; white ink on dark
        bg, ink = _DOT_SURFACES[int(rng.integers(len(_DOT_SURFACES)))]
        bg, ink = _rgb(rng, bg, np.add(bg, 40).clip(0, 255)), _rgb(rng, ink, np.add(ink, 40).clip(0, 255))
    else:
        ink, bg = _contrasting(rng, 80)
    img = _canvas(H, W, bg)
    if rng.random() < 0.3:  # brushed metal / can body
        img = img * (0.8 + 0.2 * dg.smooth_field(rng, H, W, (int(rng.integers(2, 6)), 2)))[..., None]
    return dg.finish(rng, _paint(img, mask, ink), box), label


# --------------------------------------------------------------------------------------- words
_WORDS = ("coffee", "hotel", "exit", "open", "closed", "push", "pull", "water", "power", "meter", "danger",
          "caution", "warning", "motor", "valve", "pump", "filter", "station", "service", "parking", "entrance",
          "office", "store", "market", "bank", "city", "street", "road", "avenue", "north", "south", "east", "west",
          "energy", "electric", "gas", "oil", "fuel", "pressure", "temperature", "speed", "total", "reset", "start",
          "stop", "emergency", "fire", "safety", "first", "aid", "high", "voltage", "keep", "clear", "door", "room",
          "floor", "level", "line", "unit", "model", "serial", "number", "date", "time", "check", "test", "quality",
          "approved", "made", "in", "the", "of", "and", "for", "with", "welcome", "college", "academy", "register",
          "daily", "news", "coffee", "bakery", "pizza", "garage", "school", "center", "house", "green", "red", "blue",
          "white", "black", "gold", "star", "king", "queen", "royal", "club", "team", "sport", "music", "art")
_SYLL = ("ka", "to", "ri", "men", "sa", "lo", "ver", "tan", "ex", "ol", "ba", "qui", "zen", "pro", "ma", "del",
         "stra", "ny", "ge", "wor", "fi", "lux", "ar", "co", "on", "it", "us", "ph", "je", "ck")


def _word_text(rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):
        if rng.random() < 0.7:
            w = _WORDS[int(rng.integers(len(_WORDS)))]
        else:
            w = "".join(_SYLL[i] for i in rng.integers(0, len(_SYLL), int(rng.integers(1, 4))))
        words.append(w)
    s = " ".join(words)
    case = rng.random()
    s = s.upper() if case < 0.4 else s.title() if case < 0.75 else s
    if rng.random() < 0.1:
        s += "!?.,:"[int(rng.integers(5))]
    return s


def _curved_mask(rng: np.random.Generator, font: object, text: str) -> np.ndarray:
    """Characters placed along a circular arc (scene-text style), each rotated to the tangent."""
    size = font.size
    adv = np.array([font.getlength(c) for c in text], np.float32)
    total = float(adv.sum())
    bend = _u(rng, 0.4, 1.4) * (1 if rng.random() < 0.6 else -1)  # arc angle (rad), sign = up / down
    radius = total / abs(bend)
    w = int(total + 3 * size)
    h = int(radius * (1 - np.cos(bend / 2)) + 4 * size)
    canvas = np.zeros((h, w), np.float32)
    centres = np.cumsum(adv) - adv / 2 - total / 2
    cy0 = 1.5 * size + (0 if bend > 0 else h - 3 * size)
    for c, s in zip(text, centres):
        if c == " ":
            continue
        a = s / radius * np.sign(bend)
        gx = w / 2 + radius * np.sin(abs(a)) * np.sign(s)
        gy = cy0 + radius * (1 - np.cos(a)) * np.sign(bend)
        g = _draw((int(size * 1.6), int(size * 1.6)), [((size * 0.3, size * 0.1), c, font)])
        rot = cv2.getRotationMatrix2D((g.shape[1] / 2, g.shape[0] / 2), -np.degrees(a), 1.0)
        g = cv2.warpAffine(g, rot, g.shape[::-1])
        x, y = int(gx - g.shape[1] / 2), int(gy - g.shape[0] / 2)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + g.shape[1], w), min(y + g.shape[0], h)
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], g[y0 - y:y1 - y, x0 - x:x1 - x])
    return canvas


def render_word(rng: np.random.Generator, fonts: FontLibrary) -> tuple[np.ndarray, str]:
    label = _word_text(rng)
    font = get_font(pick(rng, fonts.text), int(rng.integers(24, 56)))
    mask = _curved_mask(rng, font, label) if rng.random() < 0.2 else _text_mask(font, label)
    box = _mask_box(mask)
    ink, bg = _contrasting(rng, 70)
    img = _canvas(*mask.shape, bg)
    if rng.random() < 0.25:  # outline or drop shadow
        k = max(1, font.size // 12)
        shadow = cv2.dilate(mask, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
        if rng.random() < 0.5:
            shadow = np.roll(shadow, (k, k), (0, 1))
        img = _paint(img, shadow, 255 - ink)
    if rng.random() < 0.3:
        img = img * (0.75 + 0.25 * dg.smooth_field(rng, *mask.shape, (3, 6)))[..., None]
    return dg.finish(rng, _paint(img, mask, ink), box), label


# ------------------------------------------------------------------------------------------ api
_RENDERERS = {"seg7": render_seg7, "seg7_digit": render_seg7_digit, "seg14": render_seg14, "drum": render_drum,
              "drum_digit": render_drum_digit, "printed": render_printed, "dotmatrix": render_dotmatrix,
              "word": render_word}


def render(rng: np.random.Generator, kind: str | None = None, fonts: FontLibrary | None = None,
           weights: dict[str, float] | None = None) -> Sample:
    """One synthetic crop. ``kind`` None picks by ``weights`` (default ``DEFAULT_WEIGHTS``).

    Deterministic for a given rng state; ``fonts`` defaults to the system fonts (found once)."""
    fonts = fonts or default_library()
    if kind is None:
        w = weights or DEFAULT_WEIGHTS
        names = sorted(w)
        prob = np.array([w[k] for k in names], np.float64)
        kind = names[int(rng.choice(len(names), p=prob / prob.sum()))]
    if kind not in _RENDERERS:
        raise ValueError(f"unknown synth kind {kind!r}; expected one of {', '.join(KINDS)}")
    image, text = _RENDERERS[kind](rng, fonts)
    text = " ".join(text.split())
    if not text or any(c not in CHARSET for c in text):
        raise ValueError(f"{kind}: generated label {text!r} is outside the charset")
    return Sample(image=image, text=text, kind=kind)
