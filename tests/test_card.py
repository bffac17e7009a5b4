"""Model card parsing, validation and checksum."""

import json

import pytest

from device.card import load_card, parse_card, sha256_file, verify_checksum
from device.errors import ModelError

GOOD = {
    "format": 1, "name": "m", "charset": "0123456789", "blank_index": 0,
    "input": {"height": 32, "width": 192, "channels": 1, "dynamic_width": False},
    "normalisation": {"mean": 0.0, "std": 1.0, "polarity": "auto", "contrast": True},
    "input_quant": {"dtype": "int8", "scale": 0.0039, "zero_point": -128},
    "output_quant": {"dtype": "int8", "scale": 0.1, "zero_point": 3},
    "frames": 48, "sha256": "0" * 64, "file": "m.tflite", "metrics": {}, "recipe": {},
}


def test_round_trip():
    card = parse_card(GOOD)
    assert card.num_classes == 11 and card.index_to_char(1) == "0" and card.index_to_char(0) == ""
    assert parse_card(json.loads(card.to_json())) == card


@pytest.mark.parametrize("key,value,message", [
    ("charset", "", "charset"), ("charset", "00", "charset"), ("blank_index", 99, "blank_index"),
    ("input", {"height": 4, "width": 192, "channels": 1}, "input"),
    ("input_quant", {"dtype": "int4", "scale": 1, "zero_point": 0}, "input_quant.dtype"),
    ("sha256", "abc", "sha256"), ("format", 7, "format"),
])
def test_rejects_with_the_key_named(key, value, message):
    with pytest.raises(ModelError, match=message):
        parse_card({**GOOD, key: value})


def test_missing_key_and_bad_json(tmp_path):
    data = dict(GOOD)
    del data["frames"]
    with pytest.raises(ModelError, match="missing key 'frames'"):
        parse_card(data)
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(ModelError, match="m.json: not valid JSON"):
        load_card(path)


def test_checksum_mismatch_is_refused(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model bytes")
    card = parse_card({**GOOD, "sha256": sha256_file(model)})
    verify_checksum(card, model)
    model.write_bytes(b"swapped model")
    with pytest.raises(ModelError, match="does not match its card"):
        verify_checksum(card, model)
