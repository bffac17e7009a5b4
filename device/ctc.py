"""Greedy CTC decoding over per-frame class scores, restricted to a set of allowed characters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Read:
    """One recognised line: text, reading confidence (weakest frame of the path) and one confidence per char."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a ``T x C`` array (float32)."""
    shifted = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def allowed_mask(charset: str, blank_index: int, allowed: str | None) -> np.ndarray | None:
    """Boolean mask over classes keeping the blank and the allowed characters (``None``: keep all)."""
    if allowed is None:
        return None
    chars = [c for c in charset]
    classes = chars[:blank_index] + [""] + chars[blank_index:]
    keep = set(allowed)
    return np.array([c == "" or c in keep for c in classes], dtype=bool)


def ctc_greedy_decode(
    probs: np.ndarray, charset: str, blank_index: int = 0, mask: np.ndarray | None = None
) -> Read:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Args:
        probs: ``T x C`` class probabilities (softmax of the logits).
        charset: the characters of the non-blank classes, in class order.
        blank_index: class index of the CTC blank.
        mask: optional boolean ``C`` mask from ``allowed_mask``; masked classes are never chosen and the
            kept probabilities are renormalised per frame.
    """
    if mask is not None:
        probs = probs * mask
        probs = probs / np.maximum(probs.sum(axis=-1, keepdims=True), 1e-12)
    best = probs.argmax(axis=-1)
    best_p = probs[np.arange(len(best)), best]
    text: list[str] = []
    confs: list[float] = []
    previous = blank_index
    for cls, p in zip(best.tolist(), best_p.tolist()):
        if cls != blank_index and cls != previous:
            text.append(charset[cls - 1 if cls > blank_index else cls])
            confs.append(p)
        elif cls != blank_index and cls == previous:
            confs[-1] = max(confs[-1], p)
        previous = cls
    confidence = float(best_p.min()) if len(best_p) else 0.0
    return Read("".join(text), confidence, tuple(round(c, 4) for c in confs))
