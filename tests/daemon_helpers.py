"""Shared pieces for the daemon tests: a fake model file with a real card, frames drawn on disk, a fake reader."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from device.ctc import Read

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO / "models" / "edgeocr-crnn.tflite"
CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .,:;-+/#%()*'&_=<>!?"


def fake_model(folder: Path, charset: str = CHARSET) -> Path:
    """A placeholder .tflite with a valid card beside it (config checks read the card, not the model)."""
    model = folder / "fake.tflite"
    model.write_bytes(b"not a real model")
    card = {
        "name": "fake", "charset": charset, "blank_index": 0,
        "input": {"height": 32, "width": 128, "channels": 1},
        "normalisation": {"mean": 0.0, "std": 1.0, "polarity": "auto", "contrast": True},
        "input_quant": {"dtype": "int8", "scale": 0.0039, "zero_point": -128},
        "output_quant": {"dtype": "int8", "scale": 0.1, "zero_point": 0},
        "frames": 32, "sha256": "0" * 64, "file": "fake.tflite",
    }
    (folder / "fake.json").write_text(json.dumps(card))
    return model


def write_config(path: Path, body: str, model: Path | None = None) -> Path:
    """A config file; ``{model}`` in the body is replaced by the (fake) model path."""
    path.write_text(textwrap.dedent(body).replace("{model}", str(model or "")), encoding="utf-8")
    return path


def panel_frame(width: int = 160, height: int = 120, value: str = "123") -> np.ndarray:
    """A gray frame with some dark blocks standing in for digits, value-dependent so frames differ."""
    img = np.full((height, width), 200, np.uint8)
    for i, ch in enumerate(value):
        x = 20 + 22 * i
        img[30 : 30 + 10 + int(ch) * 3, x : x + 14] = 30
    return img


class ScriptedReader:
    """Returns the next scripted read per call (cycling); records the crop shapes it saw."""

    def __init__(self, texts: list[tuple[str, float]]):
        self.texts, self.calls, self.shapes = texts, 0, []

    def read(self, crop: np.ndarray, allowed: str | None = None) -> Read:
        text, conf = self.texts[self.calls % len(self.texts)]
        self.calls += 1
        self.shapes.append(crop.shape)
        return Read(text, conf, tuple([conf] * len(text)))
