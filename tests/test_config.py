"""Config: TOML -> frozen dataclasses; every mistake reported with file, key path, value and expectation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from daemon_helpers import REPO, fake_model, write_config

from device.config import ConfigError, load_config, resolve_state_dir
from device.regions import Box, Quad

GOOD = """
device_id = "test-1"
[camera]
source = "folder"
path = "frames"
width = 160
height = 120
interval_s = 0
[recognizer]
model = "{model}"
[tracker]
vote_k = 2
vote_n = 3
[[regions]]
name = "meter"
box = [10, 20, 100, 40]
pattern = '\\d+'
decimals = 1
unit = "kWh"
tracker = { allow_decrease = true }
[[regions]]
name = "label"
kind = "text"
quad = [[10, 70], [150, 70], [150, 110], [10, 110]]
fields = ['LOT (?P<lot>\\d+)']
[mqtt]
enabled = false
"""


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "frames").mkdir()
    return tmp_path, fake_model(tmp_path)


def errors_of(tmp_path: Path, body: str, model: Path) -> list[str]:
    path = write_config(tmp_path / "config.toml", body, model)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.messages


def test_good_config_loads_into_frozen_dataclasses(setup):
    tmp_path, model = setup
    cfg = load_config(write_config(tmp_path / "config.toml", GOOD, model))
    assert cfg.device_id == "test-1"
    assert cfg.camera.path == str((tmp_path / "frames").resolve())  # relative to the config file
    assert cfg.camera.width == 160 and cfg.camera.interval_s == 0.0
    meter, label = cfg.regions
    assert meter.box == Box(10, 20, 100, 40) and meter.chars == "0123456789." and meter.decimals == 1
    assert meter.tracker.allow_decrease and meter.tracker.vote_k == 2  # override on top of [tracker]
    assert label.tracker.allow_decrease is False
    assert isinstance(label.quad, Quad) and label.chars is None and label.fields == ("LOT (?P<lot>\\d+)",)
    assert cfg.mqtt.enabled is False and cfg.outbox.max_rows == 100_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.camera.width = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[mqtt]\nenabled = false", "[mqtt]\nenabled = false\nport = 'abc'"),
         "mqtt.port = 'abc': expected an integer 1-65535"),
        (("[mqtt]\nenabled = false", "[mqtt]\nenabled = false\nqos = 3"), "mqtt.qos = 3: expected an integer 0-2"),
        (("[mqtt]\nenabled = false", "[mqtt]\nenabled = 'yes'"), "mqtt.enabled = 'yes': expected true or false"),
        (("interval_s = 0", "interval_s = -1"), "camera.interval_s = -1: expected a number from 0 to 86400"),
        (('source = "folder"', 'source = "webcam"'), "camera.source = 'webcam': expected one of 'picamera2'"),
        (("width = 160", "widht = 160"), "camera.widht: unknown key, did you mean 'width'?"),
        (('device_id = "test-1"', 'device_id = "test-1"\ncolour = "red"'), "colour: unknown key"),
        (('device_id = "test-1"', 'device_id = "bad id!"'), "device_id = 'bad id!': expected 1-64 letters"),
        (("box = [10, 20, 100, 40]", "box = [100, 20, 100, 40]"),
         "regions.meter.box = [100, 20, 100, 40]: expected a region inside the 160x120 frame"),
        (("box = [10, 20, 100, 40]", "box = [10, 20, 0, 40]"), "regions.meter.box = [10, 20, 0, 40]: expected [x, y, w, h]"),
        (("box = [10, 20, 100, 40]", "quad = [[0, 0], [1, 1]]"), "regions.meter.quad = [[0, 0], [1, 1]]: expected four"),
        (("box = [10, 20, 100, 40]", "box = [10, 20, 100, 40]\nquad = [[0,0],[9,0],[9,9],[0,9]]"), "expected exactly one of box"),
        (("pattern = '\\d+'", "pattern = '(\\d+'"), "regions.meter.pattern = '(\\\\d+': expected a valid regular expression"),
        (("fields = ['LOT (?P<lot>\\d+)']", "fields = ['LOT \\d+']"),
         "regions.label.fields[0] = 'LOT \\\\d+': expected a regular expression with named groups"),
        (('name = "label"', 'name = "meter"'), "regions.meter.name = 'meter': expected a unique region name"),
        (("vote_n = 3", "vote_n = 1"), "tracker.vote_k = 2: expected <= tracker.vote_n (1)"),
        (("decimals = 1", "decimals = 1\nchars = 'Ä'"), "regions.meter.chars = 'Ä': expected characters of the model's charset"),
        (('path = "frames"', 'path = "missing"'), "camera.path = 'missing': expected an existing folder"),
        (('model = "{model}"', 'model = "nope.tflite"'), "recognizer.model = 'nope.tflite': expected an existing file"),
        (("kind = \"text\"", "kind = \"barcode\""), "regions.label.kind = 'barcode': expected one of 'meter', 'text'"),
    ],
)
def test_each_kind_of_mistake_is_named(setup, change, expected):
    tmp_path, model = setup
    old, new = change
    assert old in GOOD
    messages = errors_of(tmp_path, GOOD.replace(old, new), model)
    assert any(expected in m for m in messages), messages
    assert all(m.startswith(str(tmp_path / "config.toml") + ": ") for m in messages)


def test_all_errors_are_reported_together(setup):
    tmp_path, model = setup
    body = GOOD.replace("width = 160", "width = 'wide'").replace("[mqtt]\nenabled = false", "[mqtt]\nport = 0\nbogus = 1")
    messages = errors_of(tmp_path, body, model)
    assert len(messages) >= 3
    assert any("camera.width = 'wide'" in m for m in messages)
    assert any("mqtt.port = 0" in m for m in messages)
    assert any("mqtt.bogus: unknown key" in m for m in messages)


def test_invalid_toml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[camera\nwidth = 1\n")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML: .*line 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_no_regions_is_an_error(setup):
    tmp_path, model = setup
    body = GOOD[: GOOD.index("[[regions]]")] + "[mqtt]\nenabled = false\n"
    assert any("regions = None: expected at least one [[regions]] table" in m for m in errors_of(tmp_path, body, model))


def test_password_from_file_and_credential_is_never_in_repr(setup, monkeypatch):
    tmp_path, model = setup
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = load_config(write_config(tmp_path / "c.toml", GOOD.replace("enabled = false", "password_file = 'pw'"), model))
    assert cfg.mqtt.password == "s3cret" and "s3cret" not in repr(cfg)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-pw").write_text("fromsystemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    body = GOOD.replace("enabled = false", "password_credential = 'mqtt-pw'")
    assert load_config(write_config(tmp_path / "c.toml", body, model)).mqtt.password == "fromsystemd"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert any("expected $CREDENTIALS_DIRECTORY" in m for m in errors_of(tmp_path, body, model))
    both = GOOD.replace("enabled = false", "password = 'x'\npassword_file = 'pw'")
    assert any("expected at most one password source" in m for m in errors_of(tmp_path, both, model))


def test_align_markers_checked_against_reference(setup):
    import cv2
    import numpy as np

    tmp_path, model = setup
    ref = np.full((120, 160), 200, np.uint8)
    ref[5:25, 5:25] = 0
    cv2.imwrite(str(tmp_path / "ref.png"), ref)
    cv2.imwrite(str(tmp_path / "small.png"), ref[:60, :80])
    align = "[align]\nenabled = true\nreference = 'ref.png'\nmarkers = [{ name = 'a', box = [0, 0, 30, 30] }]\n"
    cfg = load_config(write_config(tmp_path / "c.toml", align + GOOD.replace('device_id = "test-1"', ""), model))
    assert cfg.align.markers[0].box == Box(0, 0, 30, 30)
    wrong = align.replace("ref.png", "small.png").replace("[0, 0, 30, 30]", "[150, 0, 30, 30]")
    messages = errors_of(tmp_path, wrong + GOOD.replace('device_id = "test-1"', ""), model)
    assert any("expected a 160x120 image like the camera's frames, got 80x60" in m for m in messages)
    assert any("align.markers[0].box = [150, 0, 30, 30]: expected a region inside" in m for m in messages)


def test_state_dir_resolution(monkeypatch, tmp_path: Path):
    from device.config import HealthConfig

    assert resolve_state_dir(HealthConfig(state_dir=str(tmp_path))) == tmp_path
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    assert resolve_state_dir(HealthConfig()) == tmp_path / "sd"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "firmware_config").glob("*.toml")))
def test_example_configs_are_valid(name):
    cfg = load_config(REPO / "firmware_config" / name, check_model=False)
    assert cfg.regions
