"""Evaluation of any backend (torch checkpoint, ONNX, INT8 TFLite) on labels.tsv folders, one metric code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.card import Normalisation
from device.ctc import allowed_mask, ctc_greedy_decode, softmax
from device.preprocess import scale_pixels


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class Score:
    """Exact-match rate and character error rate over a set, with the count."""

    n: int
    exact: float
    cer: float

    def row(self) -> str:
        """``exact% / CER%`` for tables."""
        return f"{100 * self.exact:.1f}% / {100 * self.cer:.1f}%"


def score(predictions: Sequence[str], labels: Sequence[str], ignore_case: bool = False) -> Score:
    """Exact match and CER (total edits / total label characters)."""
    if ignore_case:
        predictions = [p.lower() for p in predictions]
        labels = [t.lower() for t in labels]
    n = len(labels)
    if n == 0:
        return Score(0, 0.0, 0.0)
    exact = sum(p == t for p, t in zip(predictions, labels)) / n
    edits = sum(edit_distance(p, t) for p, t in zip(predictions, labels))
    return Score(n, exact, edits / max(1, sum(len(t) for t in labels)))


def decode_batch(logits: np.ndarray, charset: str, blank_index: int = 0, allowed: str | None = None) -> list[str]:
    """Greedy-decode ``B x T x C`` logits with the device's decoder."""
    mask = allowed_mask(charset, blank_index, allowed)
    return [ctc_greedy_decode(softmax(row), charset, blank_index, mask).text for row in logits]


Predictor = Callable[[np.ndarray], np.ndarray]  # N x H x W float inputs -> N x T x C logits


def torch_predictor(model, batch_size: int = 128) -> Predictor:
    """Logits from a torch CRNN (eval mode, no grad)."""
    import torch

    def run(inputs: np.ndarray) -> np.ndarray:
        model.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(inputs), batch_size):
                x = torch.from_numpy(inputs[i : i + batch_size]).float().unsqueeze(1)
                outs.append(model(x).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 1, 1), np.float32)

    return run


def onnx_predictor(path: Path) -> Predictor:
    """Logits from an ONNX model (batch 1, onnxruntime, 1 thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(inputs: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {name: x[None, None].astype(np.float32)})[0] for x in inputs])

    return run


def tflite_predictor(path: Path, num_threads: int = 1) -> Predictor:
    """Dequantised logits from the device recognizer (which checks the card and the checksum)."""
    from device.recognize import Recognizer

    recognizer = Recognizer(path, num_threads=num_threads)

    def run(inputs: np.ndarray) -> np.ndarray:
        return np.stack([recognizer.logits(x) for x in inputs])

    return run


def evaluate_arrays(predict: Predictor, pixels: np.ndarray, labels: Sequence[str], charset: str, norm: Normalisation,
                    allowed: str | None = None, ignore_case: bool = False) -> tuple[Score, list[str]]:
    """Score a predictor on preprocessed uint8 pixels (``N x H x W``)."""
    inputs = scale_pixels(pixels, norm)
    predictions = decode_batch(predict(inputs), charset, 0, allowed) if len(inputs) else []
    return score(predictions, labels, ignore_case), predictions
