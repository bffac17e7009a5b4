"""Camera-like degradations for synthetic crops: pure functions over uint8 BGR (or gray) arrays.

Each function takes an image and explicit parameters (or an rng for random texture) and returns a
new array of the same dtype; geometric ones also map the text box. ``degrade`` chains them at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def to_u8(img: np.ndarray) -> np.ndarray:
    """Clip to 0..255 and cast to uint8."""
    return np.clip(img, 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` px."""
    return cv2.GaussianBlur(img, (0, 0), max(sigma, 0.1))


def motion_blur(img: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Linear motion blur over ``length`` px at ``angle_deg``."""
    length = max(int(length), 1)
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    return cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))


def defocus(img: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: convolution with a disk of ``radius`` px."""
    r = max(int(np.ceil(radius)), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    k = np.clip(radius + 0.5 - np.sqrt(xx * xx + yy * yy), 0, 1).astype(np.float32)
    return cv2.filter2D(img, -1, k / k.sum())


def noise(img: np.ndarray, rng: np.random.Generator, sigma: float, shot: float = 0.0) -> np.ndarray:
    """Additive gaussian noise (``sigma``) plus signal-dependent shot noise (``shot`` * sqrt(I))."""
    f = img.astype(np.float32)
    std = sigma + shot * np.sqrt(f) if shot > 0 else sigma
    return to_u8(f + rng.standard_normal(img.shape, dtype=np.float32) * std)


def contrast(img: np.ndarray, gain: float, bias: float) -> np.ndarray:
    """``gain * (I - mean) + mean + bias``: gain < 1 lowers contrast."""
    f = img.astype(np.float32)
    m = float(f.mean())
    return to_u8((f - m) * gain + m + bias)


def low_light(img: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    """Dark exposure (``level`` in (0, 1]) with the sensor noise that comes with it."""
    dark = img.astype(np.float32) * level
    return noise(to_u8(dark), rng, sigma=2.0 + 6.0 * (1 - level), shot=0.6)


def illumination(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Uneven lighting: a linear ramp or a vignette multiplying the image by [1 - strength, 1]."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        g = np.cos(a) * xx / w + np.sin(a) * yy / h
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        g = -np.sqrt(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    gain = 1.0 - strength + strength * g
    return to_u8(img.astype(np.float32) * (gain[..., None] if img.ndim == 3 else gain))


def glare(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A specular spot or streak (rotated elliptical highlight) pushing pixels towards white."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, a = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, np.pi)
    sx = rng.uniform(0.05, 0.2) * w if rng.random() < 0.5 else rng.uniform(0.4, 1.5) * w
    sy = rng.uniform(0.08, 0.35) * h
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    g = strength * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    g = g[..., None] if img.ndim == 3 else g
    f = img.astype(np.float32)
    return to_u8(f + (255.0 - f) * g)


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency random field in [0, 1] of size h x w."""
    small = rng.random(cells, dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def reflection(img: np.ndarray, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Faint reflected scene on a cover glass: a smooth texture added on top."""
    h, w = img.shape[:2]
    tex = smooth_field(rng, h, w, (int(rng.integers(2, 5)), int(rng.integers(3, 9)))) * 255.0
    tex = tex[..., None] if img.ndim == 3 else tex
    return to_u8(img.astype(np.float32) * (1 - alpha) + tex * alpha)


def dirt(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Dirty glass: a milky smudge haze plus dark/bright speckles."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    haze = smooth_field(rng, h, w, (3, 6)) ** 2 * amount
    haze = haze[..., None] if img.ndim == 3 else haze
    f = f * (1 - haze) + rng.uniform(120, 220) * haze
    n = int(amount * h * w / 60)
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    vals = np.where(rng.random(n) < 0.7, 30.0, 230.0).astype(np.float32)
    f[ys, xs] = vals[:, None] if img.ndim == 3 else vals
    return to_u8(f)


def colour_cast(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per-channel gains (white balance error); gray images pass through."""
    if img.ndim == 2:
        return img.copy()
    gains = 1.0 + rng.uniform(-strength, strength, 3).astype(np.float32)
    return to_u8(img.astype(np.float32) * gains)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip at ``quality`` (1-100)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """Low resolution: shrink by ``factor`` (< 1) and scale back up."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(int(w * factor), 2), max(int(h * factor), 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def invert(img: np.ndarray) -> np.ndarray:
    """Inverted polarity."""
    return 255 - img


def warp(img: np.ndarray, rng: np.random.Generator, box: Box, rot_deg: float, shear: float,
         persp: float) -> tuple[np.ndarray, Box]:
    """Random rotation, shear and perspective; returns the warped image and the box's new bounds."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    d = rng.uniform(-persp, persp, (4, 2)).astype(np.float32) * np.float32([w, h]) * 0.5
    dst = src + d
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    aff = np.float32([[c, -s + shear], [s, c]])
    dst = (dst - [w / 2, h / 2]) @ aff.T + [w / 2, h / 2]
    dst -= dst.min(axis=0)
    out_w, out_h = (int(np.ceil(v)) for v in dst.max(axis=0))
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    out = cv2.warpPerspective(img, m, (max(out_w, 2), max(out_h, 2)), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    x0, y0, x1, y1 = box
    pts = cv2.perspectiveTransform(np.float32([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]), m)[0]
    return out, (*pts.min(axis=0).tolist(), *pts.max(axis=0).tolist())


def crop(img: np.ndarray, box: Box, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """Crop ``box`` grown by the given margins (px; negative clips the text), clamped to the image."""
    h, w = img.shape[:2]
    x0 = int(np.clip(round(box[0] - left), 0, w - 2))
    y0 = int(np.clip(round(box[1] - top), 0, h - 2))
    x1 = int(np.clip(round(box[2] + right), x0 + 2, w))
    y1 = int(np.clip(round(box[3] + bottom), y0 + 2, h))
    return img[y0:y1, x0:x1].copy()


def clutter(img: np.ndarray, rng: np.random.Generator, box: Box) -> np.ndarray:
    """Meter housing around the text: bezel frame outside a rectangle around ``box``, screws."""
    out = img.copy()
    h, w = out.shape[:2]
    bh = box[3] - box[1]
    g = rng.uniform(0.08, 0.6, 4) * bh
    x0, y0 = int(max(box[0] - g[0], 0)), int(max(box[1] - g[1], 0))
    x1, y1 = int(min(box[2] + g[2], w)), int(min(box[3] + g[3], h))
    colour = tuple(float(v) for v in (rng.uniform(0, 255) * np.ones(3) + rng.uniform(-20, 20, 3)))
    mask = np.ones((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 0
    out[mask.astype(bool)] = np.clip(colour, 0, 255)[: out.shape[2]] if out.ndim == 3 else colour[0]
    edge = tuple(float(np.clip(v + rng.choice([-80, 80]), 0, 255)) for v in colour)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), edge, int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 3))):
        cx = int(rng.choice([rng.uniform(0, max(x0, 1)), rng.uniform(min(x1, w - 1), w)]))
        cy = int(rng.uniform(0, h))
        r = int(max(2, rng.uniform(0.15, 0.35) * bh))
        cv2.circle(out, (cx, cy), r, tuple(float(v) for v in rng.uniform(60, 200, 3)), -1)
        cv2.line(out, (cx - r, cy), (cx + r, cy), (20.0, 20.0, 20.0), max(1, r // 4))
    return out


@dataclass(frozen=True)
class Profile:
    """How hard ``degrade`` hits a kind: probabilities scale with ``strength``; ``blur`` scales sigmas."""

    strength: float = 1.0
    blur: float = 1.0
    allow_invert: bool = True
    p_clean: float = 0.12


def degrade(img: np.ndarray, rng: np.random.Generator, text_h: float, profile: Profile = Profile()) -> np.ndarray:
    """Apply a random chain of photometric degradations; ``text_h`` (px) scales blur sizes."""
    if rng.random() < profile.p_clean:
        return jpeg(img, int(rng.integers(75, 96))) if rng.random() < 0.5 else img
    s = profile.strength

    def p(x: float) -> bool:
        return rng.random() < min(x * s, 0.95)

    if p(0.3):
        img = illumination(img, rng, rng.uniform(0.15, 0.6))
    if p(0.15):
        img = glare(img, rng, rng.uniform(0.3, 0.9))
    if p(0.1):
        img = reflection(img, rng, rng.uniform(0.05, 0.25))
    if p(0.1):
        img = dirt(img, rng, rng.uniform(0.1, 0.5))
    if profile.allow_invert and rng.random() < 0.05:
        img = invert(img)
    blur = rng.random()
    unit = text_h / 32.0 * profile.blur
    if blur < 0.3 * s:
        img = gaussian_blur(img, rng.uniform(0.4, 1.6) * unit)
    elif blur < 0.4 * s:
        img = motion_blur(img, int(rng.integers(2, 6) * unit) + 1, rng.uniform(0, 180))
    elif blur < 0.5 * s:
        img = defocus(img, rng.uniform(0.8, 2.2) * unit)
    if p(0.2):
        img = down_up(img, rng.uniform(0.3, 0.8))
    if p(0.12):  # low light and low contrast together would erase the text: one or the other
        img = low_light(img, rng, rng.uniform(0.25, 0.7))
    elif p(0.3):
        img = contrast(img, rng.uniform(0.4, 0.9), rng.uniform(-30, 30))
    if p(0.25):
        img = colour_cast(img, rng, rng.uniform(0.05, 0.25))
    if p(0.45):
        img = noise(img, rng, rng.uniform(1.0, 10.0), rng.uniform(0.0, 0.8))
    if p(0.45):
        img = jpeg(img, int(rng.integers(20, 91)))
    return img


def finish(rng: np.random.Generator, img: np.ndarray, box: Box, profile: Profile = Profile(),
           margins: tuple[float, float, float, float] = (0.05, 0.6, 0.02, 0.3), p_clutter: float = 0.25,
           geometry: float = 1.0) -> np.ndarray:
    """Rendered canvas (float or uint8 BGR) + text box -> the degraded uint8 crop a camera would give.

    Steps: housing clutter, aspect jitter, warp (scaled by ``geometry``), crop with margins drawn from
    ``margins`` = (min, max) left/right, (min, max) top/bottom as fractions of the box height (8 % of
    crops clip the text slightly), photometric ``degrade``, and 12 % converted to gray."""
    img = to_u8(img)
    bh = box[3] - box[1]
    if rng.random() < p_clutter:
        img = clutter(img, rng, box)
    sx = rng.uniform(0.8, 1.2)  # aspect jitter: condensed / wide displays and fonts
    if abs(sx - 1) > 0.03:
        img = cv2.resize(img, (max(int(img.shape[1] * sx), 2), img.shape[0]), interpolation=cv2.INTER_AREA)
        box = (box[0] * sx, box[1], box[2] * sx, box[3])
    if rng.random() < 0.6 * geometry:
        img, box = warp(img, rng, box, rot_deg=rng.normal(0, 2.0) * geometry, shear=rng.normal(0, 0.08) * geometry,
                        persp=rng.uniform(0, 0.08) * geometry)
    hmin, hmax, vmin, vmax = margins
    clip = rng.random() < 0.08
    lr = rng.uniform(hmin, hmax, 2) * bh - (rng.uniform(0, 0.1) * bh if clip else 0)
    tb = rng.uniform(vmin, vmax, 2) * bh - (rng.uniform(0, 0.08) * bh if clip else 0)
    img = crop(img, box, lr[0], tb[0], lr[1], tb[1])
    img = degrade(img, rng, text_h=bh, profile=profile)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if rng.random() < 0.12 else img
