"""The model card: the contract between convert/ (writes it) and device/ (reads and checks it).

A card is a JSON file beside the ``.tflite`` (``NAME.json`` for ``NAME.tflite``). It fixes the charset,
the blank index, the input geometry, the normalisation, the quantisation of input and output, the
sha256 of the model file, and the metrics measured when the model was made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device.errors import ModelError

CARD_FORMAT = 1
POLARITIES = ("auto", "dark_on_light", "light_on_dark")


@dataclass(frozen=True)
class InputSpec:
    """Model input: ``height x width x channels`` (NHWC), and whether the width may change."""

    height: int
    width: int
    channels: int = 1
    dynamic_width: bool = False


@dataclass(frozen=True)
class Normalisation:
    """How a crop becomes the float input: ``x = (pixel / 255 - mean) / std`` after the polarity step."""

    mean: float = 0.0
    std: float = 1.0
    polarity: str = "auto"
    contrast: bool = True


@dataclass(frozen=True)
class Quant:
    """Affine quantisation of one tensor: ``real = (q - zero_point) * scale``; dtype ``int8``/``uint8``/``float32``."""

    dtype: str
    scale: float = 1.0
    zero_point: int = 0


@dataclass(frozen=True)
class ModelCard:
    """Everything the device needs to run a model and check that it is the model it expects."""

    name: str
    charset: str
    blank_index: int
    input: InputSpec
    normalisation: Normalisation
    input_quant: Quant
    output_quant: Quant
    frames: int
    sha256: str
    file: str
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    format: int = CARD_FORMAT

    @property
    def num_classes(self) -> int:
        """Charset plus the CTC blank."""
        return len(self.charset) + 1

    def index_to_char(self, index: int) -> str:
        """Map an output class index to its character ('' for the blank)."""
        if index == self.blank_index:
            return ""
        return self.charset[index - 1 if index > self.blank_index else index]

    def to_json(self) -> str:
        """Serialise the card (stable key order, human-readable)."""
        data = asdict(self)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path_for(model_path: Path) -> Path:
    """The card that belongs to a model file: same name, ``.json``."""
    return Path(model_path).with_suffix(".json")


def _need(data: dict, key: str, kind: type | tuple, where: str) -> Any:
    if key not in data:
        raise ModelError(f"{where}: missing key '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelError(f"{where}: {key} = {value!r}: expected {getattr(kind, '__name__', kind)}")
    return value


def _quant(data: Any, where: str) -> Quant:
    if not isinstance(data, dict):
        raise ModelError(f"{where} = {data!r}: expected an object with dtype, scale, zero_point")
    dtype = _need(data, "dtype", str, where)
    if dtype not in ("int8", "uint8", "float32"):
        raise ModelError(f"{where}.dtype = {dtype!r}: expected int8, uint8 or float32")
    scale = float(_need(data, "scale", (int, float), where))
    zero_point = _need(data, "zero_point", int, where)
    if dtype != "float32" and scale <= 0:
        raise ModelError(f"{where}.scale = {scale!r}: expected > 0")
    return Quant(dtype=dtype, scale=scale, zero_point=zero_point)


def parse_card(data: Any, where: str = "card") -> ModelCard:
    """Validate a card's JSON object and build a ``ModelCard``; raise ``ModelError`` naming the key."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: expected a JSON object")
    fmt = data.get("format", CARD_FORMAT)
    if fmt != CARD_FORMAT:
        raise ModelError(f"{where}: format = {fmt!r}: expected {CARD_FORMAT}")
    charset = _need(data, "charset", str, where)
    if not charset or len(set(charset)) != len(charset):
        raise ModelError(f"{where}: charset must be non-empty with no repeated characters")
    blank = _need(data, "blank_index", int, where)
    if not 0 <= blank <= len(charset):
        raise ModelError(f"{where}: blank_index = {blank}: expected 0..{len(charset)}")
    inp = _need(data, "input", dict, where)
    spec = InputSpec(
        height=_need(inp, "height", int, f"{where}.input"),
        width=_need(inp, "width", int, f"{where}.input"),
        channels=_need(inp, "channels", int, f"{where}.input"),
        dynamic_width=bool(inp.get("dynamic_width", False)),
    )
    if spec.height < 8 or spec.width < 8 or spec.channels not in (1, 3):
        raise ModelError(f"{where}.input = {inp!r}: expected height, width >= 8 and channels 1 or 3")
    norm = data.get("normalisation", {})
    normalisation = Normalisation(
        mean=float(norm.get("mean", 0.0)),
        std=float(norm.get("std", 1.0)),
        polarity=str(norm.get("polarity", "auto")),
        contrast=bool(norm.get("contrast", True)),
    )
    if normalisation.polarity not in POLARITIES or normalisation.std <= 0:
        raise ModelError(f"{where}.normalisation = {norm!r}: expected polarity in {POLARITIES} and std > 0")
    sha = _need(data, "sha256", str, where)
    if len(sha) != 64:
        raise ModelError(f"{where}: sha256 = {sha!r}: expected 64 hex digits")
    return ModelCard(
        name=_need(data, "name", str, where),
        charset=charset,
        blank_index=blank,
        input=spec,
        normalisation=normalisation,
        input_quant=_quant(data.get("input_quant"), f"{where}.input_quant"),
        output_quant=_quant(data.get("output_quant"), f"{where}.output_quant"),
        frames=_need(data, "frames", int, where),
        sha256=sha,
        file=_need(data, "file", str, where),
        metrics=dict(data.get("metrics", {})),
        recipe=dict(data.get("recipe", {})),
    )


def load_card(path: Path) -> ModelCard:
    """Read and validate a card file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model card ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_card(data, where=str(path))


def verify_checksum(card: ModelCard, model_path: Path) -> None:
    """Refuse a model file whose sha256 differs from the card's."""
    try:
        actual = sha256_file(model_path)
    except OSError as exc:
        raise ModelError(f"{model_path}: cannot read model file ({exc.strerror or exc})") from None
    if actual != card.sha256:
        raise ModelError(
            f"{model_path}: sha256 {actual[:12]}… does not match its card ({card.sha256[:12]}…): "
            "expected the model the card describes"
        )
