"""`edgeocr read` end to end: real subprocess, real image files, the shipped INT8 model."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import MODEL, draw_digits

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not built yet")


def edgeocr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "device.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture
def images(tmp_path):
    paths = {}
    for text in ("1234", "05678", "90.12"):
        path = tmp_path / f"line-{text}.png"
        cv2.imwrite(str(path), draw_digits(text))
        paths[text] = path
    return paths


def test_reads_drawn_meter_lines_as_json(images):
    proc = edgeocr("read", *images.values(), "--chars", "0123456789.", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in images.values()]
    assert [r["text"] for r in records] == list(images)
    assert all(0.0 < r["confidence"] <= 1.0 and len(r["char_confidences"]) == len(r["text"]) for r in records)


def test_box_and_quad_select_a_region(tmp_path):
    frame = np.full((200, 400, 3), 90, np.uint8)
    line = draw_digits("4711")
    frame[50 : 50 + line.shape[0], 100 : 100 + line.shape[1]] = line
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    h, w = line.shape[:2]
    box = edgeocr("read", path, "--box", f"100,50,{w},{h}", "--chars", "0123456789", "--json")
    quad = edgeocr("read", path, "--quad", f"100,50,{100 + w},50,{100 + w},{50 + h},100,{50 + h}",
                   "--chars", "0123456789", "--json")
    assert json.loads(box.stdout)["text"] == "4711"
    assert json.loads(quad.stdout)["text"] == "4711"


def test_bad_files_are_reported_and_the_rest_still_read(images, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    proc = edgeocr("read", images["1234"], tmp_path / "missing.png", tmp_path / "empty.png", tmp_path / "notes.txt",
                   images["05678"], "--chars", "0123456789")
    assert proc.returncode == 1
    assert [line.split("\t")[1] for line in proc.stdout.splitlines()] == ["1234", "05678"]
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in proc.stderr
    assert "missing.png: no such file" in errors[0]
    assert "empty.png: empty file" in errors[1]
    assert "notes.txt: not a decodable image" in errors[2]


def test_region_outside_the_image(images):
    proc = edgeocr("read", images["1234"], "--box", "0,0,5000,10")
    assert proc.returncode == 1 and "lies outside the" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--box", "1,2,3"], "--box '1,2,3': expected 4 comma-separated numbers"),
    (["--quad", "1,2,3,4,5,6,7,x"], "--quad"),
    (["--chars", ""], "--chars '': expected at least one character"),
    (["--chars", "0123\u00e9"], "not in the model's charset"),
])
def test_bad_arguments_exit_2_with_one_line(images, args, message):
    proc = edgeocr("read", images["1234"], *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_model_that_does_not_match_its_card_is_refused(images, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(MODEL.read_bytes() + b"\0")  # a swapped/corrupted file
    (tmp_path / "m.json").write_text(MODEL.with_suffix(".json").read_text())
    proc = edgeocr("read", images["1234"], "--model", model)
    assert proc.returncode == 2 and "does not match its card" in proc.stderr
    (tmp_path / "m.json").write_text("{}")
    proc = edgeocr("read", images["1234"], "--model", model)
    assert proc.returncode == 2 and "m.json: missing key" in proc.stderr
