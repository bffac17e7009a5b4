"""Datasets: synthetic shards (rendered once, cached as ``.npz``) and any folder with a ``labels.tsv``.

Every sample passes through ``device.preprocess.to_pixels`` — the very function the device runs —
so training, evaluation and the Pi see the same pixels. Samples are stored as uint8 ``H x W``.
"""

from __future__ import annotations

import hashlib
import re
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.charset import CHARSET, normalise_label
from device.card import InputSpec, Normalisation
from device.errors import ImageError
from device.preprocess import load_image, normalise_polarity, stretch_contrast, to_gray, to_pixels

logger = logging.getLogger(__name__)

# Real DEV folders (relative to a --real-root): (folder, allowed chars the way a user sets them, ignore case).
REAL_SETS: dict[str, tuple[str, str | None, bool]] = {
    "meter-lcd-lines": ("seven-segment/meter-lcd-lines", "0123456789.", False),
    "lcd-digits": ("seven-segment/lcd-digits", "0123456789", False),
    "rolling-digits": ("meter-digits/rolling-counter-digits", "0123456789", False),
    "cute80": ("text-lines/cute80", None, True),
}


@dataclass(frozen=True)
class LabelledImage:
    """One row of a labels.tsv: image path, transcription, and the group it belongs to (meter/sub-folder)."""

    path: Path
    text: str
    group: str


def meter_group(folder: str) -> str:
    """Sub-folder -> meter identity: re-collections of one meter (``NAME_20250630``, ``NAME`` spelt
    with other punctuation) fall into one group, so a split never puts one meter on both sides."""
    return re.sub(r"[^a-z0-9]", "", re.sub(r"_\d{8}$", "", folder.lower()))


def read_labels(folder: Path, charset: str = CHARSET) -> list[LabelledImage]:
    """Read ``folder/labels.tsv`` (relative_path TAB text); skip rows outside the charset with a warning."""
    folder = Path(folder)
    tsv = folder / "labels.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv}: no labels.tsv (expected relative_path<TAB>text per line)")
    rows: list[LabelledImage] = []
    skipped = 0
    for number, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{tsv}:{number}: expected relative_path<TAB>text, got {line!r}")
        rel, text = parts
        label = normalise_label(text.strip(), charset)
        if not label:
            skipped += 1
            continue
        group = meter_group(rel.split("/")[0]) if "/" in rel else ""
        rows.append(LabelledImage(folder / rel, label, group))
    if skipped:
        logger.warning("%s: skipped %d rows with characters outside the charset", tsv, skipped)
    return rows


def is_held_back(row: LabelledImage, groups: Sequence[str], fraction: float = 0.3) -> bool:
    """Fixed split. With >= 4 groups (meters) whole groups are held back, else files by hash of the name."""
    if len(groups) >= 4:
        ordered = sorted(groups, key=lambda g: hashlib.md5(g.encode()).hexdigest())
        held = set(ordered[: max(1, round(len(ordered) * fraction))])
        return row.group in held
    digest = hashlib.md5(row.path.name.encode()).digest()
    return digest[0] < 256 * fraction


def split_labels(rows: list[LabelledImage], fraction: float = 0.3) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(train part, held-back part) of a real folder; the held-back part never trains."""
    groups = sorted({r.group for r in rows if r.group})
    held = [r for r in rows if is_held_back(r, groups, fraction)]
    train = [r for r in rows if not is_held_back(r, groups, fraction)]
    return train, held


def load_pixels(rows: Sequence[LabelledImage], spec: InputSpec, norm: Normalisation) -> tuple[np.ndarray, list[str]]:
    """Preprocess labelled images into ``N x H x W`` uint8 (unreadable files are skipped with a warning)."""
    images, texts = [], []
    for row in rows:
        try:
            images.append(to_pixels(load_image(row.path), spec, norm))
        except ImageError as exc:
            logger.warning("skipping %s", exc)
            continue
        texts.append(row.text)
    return np.stack(images) if images else np.zeros((0, spec.height, spec.width), np.uint8), texts


def save_shard(path: Path, images: np.ndarray, texts: Sequence[str], kinds: Sequence[str]) -> None:
    """Write one cached shard (``images`` uint8 N x H x W, ``texts``, ``kinds``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, texts=np.array(texts, dtype=object), kinds=np.array(kinds, dtype=object))
    tmp.replace(path)


def load_shards(paths: Sequence[Path]) -> tuple[np.ndarray, list[str], list[str]]:
    """Concatenate cached shards."""
    images, texts, kinds = [], [], []
    for path in paths:
        with np.load(path, allow_pickle=True) as data:
            images.append(data["images"])
            texts.extend(str(t) for t in data["texts"])
            kinds.extend(str(k) for k in data["kinds"])
    return np.concatenate(images), texts, kinds


def render_shard(seed: int, count: int, spec: InputSpec, norm: Normalisation, kinds: Sequence[str] | None = None,
                 weights: dict[str, float] | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Render ``count`` synthetic samples and preprocess them exactly as the device would."""
    from convert import synth

    rng = np.random.default_rng(seed)
    images = np.zeros((count, spec.height, spec.width), np.uint8)
    texts, sample_kinds = [], []
    names = list(weights or synth.DEFAULT_WEIGHTS)
    probs = np.array([(weights or synth.DEFAULT_WEIGHTS)[k] for k in names], dtype=np.float64)
    probs /= probs.sum()
    for i in range(count):
        kind = kinds[i % len(kinds)] if kinds else str(rng.choice(names, p=probs))
        sample = synth.render(rng, kind)
        images[i] = to_pixels(sample.image, spec, norm)
        texts.append(sample.text)
        sample_kinds.append(sample.kind)
    return images, texts, sample_kinds


def augment_pixels(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Cheap train-time jitter on preprocessed uint8 pixels: shift, contrast, blur, noise."""
    import cv2

    out = image.astype(np.float32)
    h, w = out.shape
    if rng.random() < 0.5:
        dx, dy = rng.integers(-3, 4), rng.integers(-2, 3)
        scale = rng.uniform(0.9, 1.08)
        matrix = np.float32([[scale, rng.uniform(-0.08, 0.08), dx], [0, scale, dy + (1 - scale) * h / 2]])
        out = cv2.warpAffine(out, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        lo = rng.uniform(0, 60)
        hi = rng.uniform(190, 255)
        out = lo + out * (hi - lo) / 255.0
    if rng.random() < 0.25:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < 0.3:
        out = out + rng.normal(0, rng.uniform(2, 12), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


class TrainBatches:
    """Endless shuffled batches drawn from several pools with fixed mixing weights."""

    def __init__(self, pools: dict[str, tuple[np.ndarray, list[str]]], weights: dict[str, float], batch_size: int,
                 seed: int, augment: bool = True):
        self.pools = {k: v for k, v in pools.items() if len(v[1])}
        total = sum(weights[k] for k in self.pools)
        self.names = list(self.pools)
        self.probs = np.array([weights[k] / total for k in self.names])
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.augment = augment

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[str]]]:
        while True:
            counts = self.rng.multinomial(self.batch_size, self.probs)
            images, texts = [], []
            for name, n in zip(self.names, counts):
                pool_images, pool_texts = self.pools[name]
                for i in self.rng.integers(0, len(pool_texts), n):
                    image = pool_images[i]
                    if self.augment and (name != "synth" or self.rng.random() < 0.3):
                        image = augment_pixels(self.rng, image)
                    images.append(image)
                    texts.append(pool_texts[i])
            yield np.stack(images), texts


def load_labels_split(folder: Path, spec: InputSpec, norm: Normalisation, fraction: float = 0.3):
    """A real folder preprocessed and split: ``((train_pixels, train_texts), (held_pixels, held_texts))``."""
    train_rows, held_rows = split_labels(read_labels(folder), fraction)
    return load_pixels(train_rows, spec, norm), load_pixels(held_rows, spec, norm)


def stitch_lines(rng: np.random.Generator, rows: Sequence[LabelledImage], count: int, spec: InputSpec,
                 norm: Normalisation, min_len: int = 3, max_len: int = 8) -> tuple[np.ndarray, list[str]]:
    """Real single-character crops of one group, resized to a common height and set side by side.

    Gives real textures (LCD glass, drum plastic, ESP32-CAM noise) in whole-line form. Only the train
    part of a real folder may be passed in.
    """
    import cv2

    by_group: dict[str, list[tuple[np.ndarray, str]]] = {}
    for row in rows:
        try:
            by_group.setdefault(row.group, []).append((load_image(row.path), row.text))
        except ImageError:
            continue
    groups = [g for g in by_group.values() if len(g) >= 2]
    images = np.zeros((count, spec.height, spec.width), np.uint8)
    texts = []
    for i in range(count):
        group = groups[rng.integers(len(groups))]
        picks = [group[j] for j in rng.integers(0, len(group), rng.integers(min_len, max_len + 1))]
        height = 64
        parts = []
        for image, _ in picks:
            gray = normalise_polarity(stretch_contrast(to_gray(image)), norm.polarity)  # per crop, as one display
            width = max(4, int(round(gray.shape[1] * height / gray.shape[0] * rng.uniform(0.85, 1.1))))
            parts.append(cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA))
        line = np.concatenate(parts, axis=1)
        images[i] = to_pixels(line, spec, norm)
        texts.append("".join(text for _, text in picks))
    return images, texts
