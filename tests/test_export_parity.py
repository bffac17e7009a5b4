"""The real conversion path on a tiny model: torch -> ONNX -> onnx2tf -> full-INT8 TFLite, parity enforced.

Runs in the workstation venv (marker ``convert``). It FAILS — never skips — when the INT8 model
disagrees with torch beyond the budget.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.convert

torch = pytest.importorskip("torch", reason="the convert stack (torch, onnx2tf) runs in .venv-convert")


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """A tiny CRNN trained for a few hundred steps on synthetic 7-segment lines (so its outputs are confident)."""
    from convert.charset import CHARSET
    from convert.crnn import build
    from convert.data import render_shard
    from convert.train import ctc_loss, spec_for

    torch.manual_seed(0)
    torch.set_num_threads(2)
    spec, norm = spec_for(128)
    pixels, texts, _ = render_shard(7, 600, spec, norm, kinds=("seg7",))
    model = build("tiny-conv", len(CHARSET) + 1, 128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x_all = torch.from_numpy(pixels).float().div(255.0).unsqueeze(1)
    model.train()
    for step in range(300):
        idx = torch.randint(0, len(texts), (32,))
        loss = ctc_loss(model(x_all[idx]), [texts[i] for i in idx.tolist()])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, pixels, texts, tmp_path_factory.mktemp("export")


def test_full_int8_export_keeps_parity(trained_tiny):
    from convert.export import export
    from device.recognize import Recognizer

    model, pixels, texts, out = trained_tiny
    # width 128: no channel count of the tiny net equals a feature-map size (24 frames = 24 channels
    # at width 96 made onnx2tf transpose the output, which this very check caught).
    card, result, ops = export(model, out / "tiny.tflite", pixels[:200], pixels[400:], texts[400:], name="tiny",
                               min_string_agreement=0.9, max_exact_drop=0.03)
    assert {dtype for _, dtype in ops} <= {"int8", "int32", "-"}, ops  # no float op left
    assert result.onnx_strings >= 0.99 and result.int8_strings >= 0.9 and result.int8_frames >= 0.98
    assert card.input_quant.dtype == "int8" and card.output_quant.dtype == "int8"
    assert (out / "tiny.tflite").stat().st_size < 1_000_000
    recognizer = Recognizer(out / "tiny.tflite")
    inputs = pixels[400:].astype(np.float32) / 255.0  # the card's normalisation: mean 0, std 1
    reads = [recognizer.read_input(x).text for x in inputs]
    assert np.mean([r == t for r, t in zip(reads, texts[400:])]) == pytest.approx(result.int8_vs_labels_exact)


def test_parity_budget_fails_on_a_mismatched_model(trained_tiny):
    from convert.export import ExportError, check_budget, parity

    model, pixels, texts, out = trained_tiny
    if not (out / "tiny.tflite").exists():
        pytest.fail("the export test must run first and produce tiny.tflite")
    other = type(model)(model.cfg)  # same architecture, untrained weights: must break parity
    result = parity(other, out / "tiny.onnx", out / "tiny.tflite", pixels[400:], texts[400:])
    with pytest.raises(ExportError, match="parity"):
        check_budget(result)
