"""The recognizer: the one place that imports a TFLite interpreter, checks the model against its card,
(de)quantises, and decodes.

Interpreter order: ``ai_edge_litert`` (LiteRT, XNNPACK) -> ``tflite_runtime`` -> ``tensorflow.lite``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from device.card import ModelCard, Quant, card_path_for, load_card, verify_checksum
from device.ctc import Read, allowed_mask, ctc_greedy_decode, softmax
from device.errors import ModelError
from device.preprocess import to_input

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "edgeocr-crnn.tflite"
_DTYPES = {"int8": np.int8, "uint8": np.uint8, "float32": np.float32}


def default_model_path() -> Path:
    """The shipped model: inside the installed package, else ``models/`` of a source checkout."""
    try:
        packaged = resources.files("device.models").joinpath(DEFAULT_MODEL_NAME)
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME


def interpreter_class() -> tuple[Any, str]:
    """Return the first available TFLite ``Interpreter`` class and the name of its package."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        from tensorflow.lite import Interpreter  # type: ignore[import-not-found]

        return Interpreter, "tensorflow.lite"
    except ImportError:
        raise ModelError(
            "no TFLite interpreter found: expected ai-edge-litert, tflite-runtime or tensorflow "
            "(pip install 'edgeocr[device]')"
        ) from None


def quantise(x: np.ndarray, quant: Quant) -> np.ndarray:
    """Float -> the tensor's dtype with its affine parameters (saturating)."""
    if quant.dtype == "float32":
        return x.astype(np.float32)
    info = np.iinfo(_DTYPES[quant.dtype])
    q = np.round(x / quant.scale + quant.zero_point)
    return np.clip(q, info.min, info.max).astype(_DTYPES[quant.dtype])


def dequantise(q: np.ndarray, quant: Quant) -> np.ndarray:
    """The tensor's dtype -> float32."""
    if quant.dtype == "float32":
        return q.astype(np.float32)
    return (q.astype(np.float32) - quant.zero_point) * quant.scale


def _tensor_quant(detail: dict) -> Quant:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if dtype == "float32":
        return Quant("float32")
    return Quant(dtype, float(scale), int(zero_point))


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the runtime's native 'INFO: Created TensorFlow Lite XNNPACK delegate' line (fd 2) while loading."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Recognizer:
    """A loaded, checked model that turns crops into ``Read`` results.

    Args:
        model_path: the ``.tflite`` file (default: the shipped model); its card is ``NAME.json`` beside it.
        num_threads: interpreter threads (1 on a busy Pi core, up to 4 on a Pi 4/5).
        card_path: override the card location.
    """

    def __init__(self, model_path: Path | str | None = None, num_threads: int = 1, card_path: Path | None = None):
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: model file not found")
        self.card: ModelCard = load_card(card_path or card_path_for(self.model_path))
        verify_checksum(self.card, self.model_path)
        interpreter_cls, self.backend = interpreter_class()
        try:
            with _quiet_native_stderr():
                self._interpreter = interpreter_cls(model_path=str(self.model_path), num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.model_path}: cannot load as a TFLite model ({exc})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._check_against_card()
        self._masks: dict[str | None, np.ndarray | None] = {}

    def _check_against_card(self) -> None:
        card, where = self.card, str(self.model_path)
        shape = tuple(int(v) for v in self._input["shape"])
        expected = (1, card.input.height, card.input.width, card.input.channels)
        if shape != expected and not (card.input.dynamic_width and shape[:2] == expected[:2]):
            raise ModelError(f"{where}: input shape {shape} does not match its card {expected}")
        out_shape = tuple(int(v) for v in self._output["shape"])
        if out_shape[-1] != card.num_classes:
            raise ModelError(f"{where}: {out_shape[-1]} output classes, card expects {card.num_classes}")
        for name, detail, declared in (
            ("input", self._input, card.input_quant),
            ("output", self._output, card.output_quant),
        ):
            actual = _tensor_quant(detail)
            same = actual.dtype == declared.dtype and (
                actual.dtype == "float32"
                or (abs(actual.scale - declared.scale) <= 1e-6 * max(1.0, declared.scale)
                    and actual.zero_point == declared.zero_point)
            )
            if not same:
                raise ModelError(f"{where}: {name} quantisation {actual} does not match its card {declared}")

    def mask(self, allowed: str | None) -> np.ndarray | None:
        """Cached class mask for a set of allowed characters (``None``: all)."""
        if allowed not in self._masks:
            self._masks[allowed] = allowed_mask(self.card.charset, self.card.blank_index, allowed)
        return self._masks[allowed]

    def logits(self, model_input: np.ndarray) -> np.ndarray:
        """Run one ``H x W`` float input; return the dequantised ``T x C`` logits."""
        x = model_input.reshape(1, self.card.input.height, self.card.input.width, self.card.input.channels)
        self._interpreter.set_tensor(self._input["index"], quantise(x, self.card.input_quant))
        self._interpreter.invoke()
        return dequantise(self._interpreter.get_tensor(self._output["index"])[0], self.card.output_quant)

    def probabilities(self, model_input: np.ndarray) -> np.ndarray:
        """Run one ``H x W`` float input; return ``T x C`` class probabilities."""
        return softmax(self.logits(model_input))

    def read_input(self, model_input: np.ndarray, allowed: str | None = None) -> Read:
        """Recognise an already preprocessed input."""
        probs = self.probabilities(model_input)
        return ctc_greedy_decode(probs, self.card.charset, self.card.blank_index, self.mask(allowed))

    def read(self, crop: np.ndarray, allowed: str | None = None) -> Read:
        """Preprocess a crop (gray or BGR, any size) exactly as in training, then recognise it."""
        return self.read_input(to_input(crop, self.card.input, self.card.normalisation), allowed)
