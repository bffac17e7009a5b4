"""Export: torch -> ONNX (opset 17, logits) -> onnx2tf -> full-INT8 TFLite + card, then a parity check.

The parity check compares torch, ONNX Runtime and the INT8 TFLite model (through the device's own
recognizer) on greedy strings and per-frame argmax agreement, and fails the export over budget.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from convert.charset import BLANK_INDEX, CHARSET
from convert.crnn import CRNN, count_parameters
from convert.evaluate import decode_batch, onnx_predictor, torch_predictor, tflite_predictor
from device.card import CARD_FORMAT, ModelCard, Quant, parse_card, sha256_file
from device.preprocess import scale_pixels
from convert.train import spec_for

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The conversion failed or the INT8 model broke the parity budget."""


@dataclass(frozen=True)
class Parity:
    """Agreement between backends on the same inputs (fractions in [0, 1])."""

    n: int
    onnx_strings: float
    int8_strings: float
    int8_frames: float
    int8_vs_labels_exact: float
    torch_vs_labels_exact: float


def export_onnx(model: CRNN, path: Path) -> Path:
    """Fixed-shape ``1 x 1 x 32 x W`` ONNX with input ``input`` and output ``logits``."""
    model.eval()
    dummy = torch.zeros(1, 1, model.cfg.height, model.cfg.width)
    torch.onnx.export(model, dummy, str(path), input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamo=False, do_constant_folding=True)
    return path


def _onnx2tf_bin() -> str:
    candidate = Path(sys.executable).parent / "onnx2tf"
    return str(candidate) if candidate.exists() else "onnx2tf"


def run_onnx2tf(onnx_path: Path, calib: np.ndarray, workdir: Path, recurrent: bool) -> Path:
    """Full-INT8 conversion with a calibration set (``N x H x W`` float in [0, 1]); returns the .tflite."""
    calib_path = workdir / "calib.npy"
    np.save(calib_path, calib[..., None].astype(np.float32))  # N x H x W x 1 (NHWC)
    out_dir = workdir / "tf"
    cmd = [_onnx2tf_bin(), "-i", str(onnx_path), "-o", str(out_dir), "-oiqt", "-qt", "per-channel",
           "-iqd", "int8", "-oqd", "int8", "-cind", "input", str(calib_path), "[[[[0.0]]]]", "[[[[1.0]]]]"]
    if recurrent:
        cmd.append("-eru")  # full INT8 needs the LSTM/GRU unrolled (fixed width)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    logger.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    found = sorted(out_dir.glob("*_full_integer_quant.tflite"))
    if proc.returncode != 0 or not found:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise ExportError(f"onnx2tf failed (exit {proc.returncode}); last output:\n{tail}")
    return found[0]


def list_ops(tflite_path: Path) -> list[tuple[str, str]]:
    """(op name, dtype of its first input) for every op in a TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite_path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():  # noqa: SLF001 — the only API that lists ops
        inputs = [i for i in op["inputs"] if i >= 0]
        dtype = np.dtype(tensors[inputs[0]]["dtype"]).name if inputs and inputs[0] in tensors else "-"
        ops.append((op["op_name"], dtype))
    return ops


def float_ops(ops: list[tuple[str, str]]) -> list[str]:
    """Ops that compute in float (a full-INT8 model has none)."""
    return sorted({name for name, dtype in ops if dtype == "float32"})


def tensor_quant(tflite_path: Path) -> tuple[Quant, Quant, tuple[int, ...], tuple[int, ...]]:
    """Input/output quantisation and shapes as the interpreter reports them."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite_path))
    result = []
    for detail in (interp.get_input_details()[0], interp.get_output_details()[0]):
        scale, zero = detail["quantization"]
        result.append(Quant(np.dtype(detail["dtype"]).name, float(scale), int(zero)))
    return (result[0], result[1], tuple(interp.get_input_details()[0]["shape"]),
            tuple(interp.get_output_details()[0]["shape"]))


def write_card(tflite_path: Path, model: CRNN, name: str, metrics: dict, recipe: dict) -> ModelCard:
    """Write ``NAME.json`` beside the model and return the validated card."""
    spec, norm = spec_for(model.cfg.width)
    in_q, out_q, _, out_shape = tensor_quant(tflite_path)
    data = {
        "format": CARD_FORMAT,
        "name": name,
        "charset": CHARSET,
        "blank_index": BLANK_INDEX,
        "input": asdict(spec),
        "normalisation": asdict(norm),
        "input_quant": asdict(in_q),
        "output_quant": asdict(out_q),
        "frames": int(out_shape[1]),
        "sha256": sha256_file(tflite_path),
        "file": tflite_path.name,
        "metrics": {"parameters": count_parameters(model), "file_bytes": tflite_path.stat().st_size, **metrics},
        "recipe": {**recipe, "model_args": model.cfg.to_dict()},
    }
    card = parse_card(data, where=str(tflite_path.with_suffix(".json")))
    tflite_path.with_suffix(".json").write_text(card.to_json(), encoding="utf-8")
    return card


def parity(model: CRNN, onnx_path: Path, tflite_path: Path, pixels: np.ndarray, labels: list[str]) -> Parity:
    """Greedy-string and frame agreement of ONNX and INT8 against torch on the same preprocessed inputs."""
    _, norm = spec_for(model.cfg.width)
    inputs = scale_pixels(pixels, norm)
    t_logits = torch_predictor(model)(inputs)
    o_logits = onnx_predictor(onnx_path)(inputs)
    q_logits = tflite_predictor(tflite_path)(inputs)
    t_str, o_str, q_str = (decode_batch(x, CHARSET, BLANK_INDEX) for x in (t_logits, o_logits, q_logits))
    n = len(labels)
    return Parity(
        n=n,
        onnx_strings=float(np.mean([a == b for a, b in zip(t_str, o_str)])),
        int8_strings=float(np.mean([a == b for a, b in zip(t_str, q_str)])),
        int8_frames=float(np.mean(t_logits.argmax(-1) == q_logits.argmax(-1))),
        int8_vs_labels_exact=float(np.mean([a == b for a, b in zip(q_str, labels)])),
        torch_vs_labels_exact=float(np.mean([a == b for a, b in zip(t_str, labels)])),
    )


def export(model: CRNN, out_path: Path, calib_pixels: np.ndarray, parity_pixels: np.ndarray, parity_labels: list[str],
           name: str | None = None, recipe: dict | None = None, min_string_agreement: float = 0.90,
           max_exact_drop: float = 0.01) -> tuple[ModelCard, Parity, list[tuple[str, str]]]:
    """The whole export; raises ``ExportError`` if any op stays float or parity breaks the budget.

    Args:
        calib_pixels: ``N x H x W`` uint8 from the training distribution (representative dataset).
        parity_pixels / parity_labels: inputs and labels for the parity check.
        min_string_agreement: greedy strings INT8 vs torch must agree at least this often.
        max_exact_drop: INT8 exact match may be at most this much below float.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _, norm = spec_for(model.cfg.width)
    with tempfile.TemporaryDirectory(prefix="edgeocr-export-") as tmp:
        work = Path(tmp)
        onnx_path = export_onnx(model, work / "model.onnx")
        tflite = run_onnx2tf(onnx_path, scale_pixels(calib_pixels, norm), work, model.cfg.sequence != "conv")
        shutil.copyfile(tflite, out_path)
        shutil.copyfile(onnx_path, out_path.with_suffix(".onnx"))
    ops = list_ops(out_path)
    floats = float_ops(ops)
    if floats:
        raise ExportError(f"{out_path}: ops still in float32: {', '.join(floats)} (expected full INT8)")
    card = write_card(out_path, model, name or out_path.stem, {}, recipe or {})
    result = parity(model, out_path.with_suffix(".onnx"), out_path, parity_pixels, parity_labels)
    metrics = {"parity": asdict(result), "ops": sorted({op for op, _ in ops})}
    card = write_card(out_path, model, card.name, metrics, recipe or {})
    logger.info("parity: %s", json.dumps(asdict(result)))
    check_budget(result, min_string_agreement, max_exact_drop)
    return card, result, ops


def check_budget(result: Parity, min_string_agreement: float = 0.90, max_exact_drop: float = 0.01,
                 min_frame_agreement: float = 0.98) -> None:
    """Raise ``ExportError`` when ONNX or INT8 strays from torch beyond the budget.

    The hard limits: ONNX matches torch (>= 99% of strings), INT8 keeps >= 98% of frames' argmax, and
    INT8 exact match is at most ``max_exact_drop`` below float. String agreement is looser because on
    crops the float model already misreads, small logit shifts change which wrong string comes out.
    """
    if result.int8_frames < min_frame_agreement:
        raise ExportError(f"parity: INT8 agrees with torch on {100 * result.int8_frames:.1f}% of frames, "
                          f"expected >= {100 * min_frame_agreement:.0f}%")
    if result.onnx_strings < 0.99:
        raise ExportError(f"parity: ONNX agrees with torch on {100 * result.onnx_strings:.1f}% of strings, expected >= 99%")
    if result.int8_strings < min_string_agreement:
        raise ExportError(f"parity: INT8 agrees with torch on {100 * result.int8_strings:.1f}% of strings, "
                          f"expected >= {100 * min_string_agreement:.0f}%")
    if result.torch_vs_labels_exact - result.int8_vs_labels_exact > max_exact_drop:
        raise ExportError(f"parity: INT8 exact match {100 * result.int8_vs_labels_exact:.1f}% is more than "
                          f"{100 * max_exact_drop:.1f} points below float {100 * result.torch_vs_labels_exact:.1f}%")
