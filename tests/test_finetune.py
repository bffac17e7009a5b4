"""`edgeocr-convert finetune DIR`: a user's labelled crops -> a new INT8 model + card, from the shipped weights."""

import subprocess
import sys

import pytest

from helpers import MODEL

pytestmark = pytest.mark.convert
pytest.importorskip("torch", reason="the convert stack (torch, onnx2tf) runs in .venv-convert")


def test_finetune_writes_a_checked_model_with_a_before_after_report(tmp_path):
    import cv2
    import numpy as np

    from convert import synth
    from device.recognize import Recognizer

    data = tmp_path / "crops"
    data.mkdir()
    rng = np.random.default_rng(5)
    rows = []
    for i in range(40):
        sample = synth.render(rng, "printed")
        cv2.imwrite(str(data / f"{i:03d}.png"), sample.image)
        rows.append(f"{i:03d}.png\t{sample.text}")
    (data / "labels.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mine.tflite"
    proc = subprocess.run([sys.executable, "-m", "convert.cli", "finetune", str(data), "--out", str(out),
                           "--base", str(MODEL.with_suffix(".pt")), "--steps", "30", "--threads", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = proc.stdout
    assert "before (base, float)" in report and "after (INT8, shipped)" in report
    assert "n=12 (trained on 28)" in report
    recognizer = Recognizer(out)  # checks the card, the checksum and the tensors
    assert recognizer.card.name == "mine" and recognizer.card.metrics["parity"]["int8_frames"] >= 0.98


def test_finetune_refuses_a_folder_without_labels(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "convert.cli", "finetune", str(tmp_path), "--out",
                           str(tmp_path / "x.tflite"), "--base", str(MODEL.with_suffix(".pt"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "labels.tsv: no labels.tsv" in proc.stderr and "Traceback" not in proc.stderr
