"""Bad input at scale: generated configs, images, frames and MQTT commands.

Every case must end in a result or in the module's own error (``ConfigError``, ``ImageError``, a skipped
frame, a refused command): never another exception, never a hang. Counts are asserted, so CI really
generates >= 1,000 configs, >= 10,000 images/frames and >= 1,000 commands. Derandomised, so a failure
repeats; run with ``--hypothesis-seed`` / without derandomisation locally to explore further.
"""

from __future__ import annotations

import io
import json
import string
import time
from dataclasses import fields, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.capture import Capture, FrameSource
from device.card import InputSpec, Normalisation
from device.config import (
    AlignConfig,
    CameraConfig,
    Config,
    ConfigError,
    HealthConfig,
    MqttConfig,
    OutboxConfig,
    RecognizerConfig,
    TrackerConfig,
    load_config,
    parse_config,
)
from device.ctc import Read
from device.errors import ImageError
from device.pipeline import read_regions
from device.preprocess import load_image, to_gray, to_input

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # quads at 1e308
N_CONFIGS, N_TOML, N_FRAMES, N_FILES, N_COMMANDS = 1100, 300, 6000, 4200, 1200
SLOW_CASE_S = 5.0  # one case taking longer than this counts as a hang
FUZZ = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
SECRET = "fuzz-secret-Pa55w0rd"


def fuzz(max_examples: int) -> settings:
    """The shared settings with a number of examples."""
    return settings(FUZZ, max_examples=max_examples)


# -- configs ---------------------------------------------------------------------------------------------------

def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


scalars = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.integers(-5, 70_000),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-10, 2000),
    st.text(max_size=12), st.sampled_from(["folder", "opencv", "picamera2", "meter", "text", ".", "x", "",
                                           "127.0.0.1", "edgeocr", "homeassistant", "a/b", "#", r"\d+",
                                           "(?P<x>\\d+)", "(", "nope.tflite", "rtsp://h/s", "s3cr3t"]),
    st.dates(), st.times(), st.datetimes(),
)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
number = st.one_of(st.integers(-10, 600), st.floats(-10, 600), st.floats(allow_nan=True, allow_infinity=True))
boxes = st.one_of(st.lists(number, min_size=0, max_size=6), anything)
quads = st.one_of(st.lists(st.lists(number, min_size=2, max_size=2), min_size=4, max_size=4),
                  st.lists(st.lists(number, max_size=3), max_size=5), anything)


def section(cls: type, extra: dict | None = None) -> st.SearchStrategy:
    keys = st.sampled_from([*_names(cls), "bogus", "Port"])
    return st.one_of(st.dictionaries(keys, anything, max_size=6), anything) if not extra else \
        st.dictionaries(keys, anything, max_size=6).flatmap(
            lambda d: st.fixed_dictionaries({k: v for k, v in extra.items()}).map(lambda e: {**d, **e}))


region = st.dictionaries(
    st.sampled_from(["name", "kind", "box", "quad", "chars", "pattern", "fields", "decimals", "unit", "tracker",
                     "rotation_deg", "max_lines", "device_class", "state_class", "wat"]),
    anything, max_size=7,
).flatmap(lambda d: st.fixed_dictionaries({}, optional={"box": boxes, "quad": quads, "name": st.sampled_from(
    ["a", "b", "a", "", "x/y", "r1"]), "tracker": section(TrackerConfig)}).map(lambda e: {**d, **e}))

BASE = {"device_id": "dev", "camera": {"source": "folder", "path": ".", "width": 64, "height": 48},
        "mqtt": {"enabled": False}, "regions": [{"name": "a", "box": [1, 1, 20, 10]}]}
KEY_PATHS = [(sec, name) for sec, cls in (("camera", CameraConfig), ("recognizer", RecognizerConfig),
                                          ("tracker", TrackerConfig), ("mqtt", MqttConfig), ("outbox", OutboxConfig),
                                          ("health", HealthConfig), ("align", AlignConfig)) for name in _names(cls)
             if (sec, name) != ("recognizer", "model")]
KEY_PATHS += [("regions.0", k) for k in ("name", "kind", "box", "quad", "chars", "pattern", "fields", "decimals",
                                        "unit", "max_lines", "rotation_deg", "tracker")]
plausible = st.one_of(st.booleans(), st.integers(0, 100), st.floats(0, 100), st.sampled_from(
    ["meter", "text", "0123456789", r"\d+", r"(?P<lot>\d+)", "127.0.0.1", "edgeocr", "outbox.sqlite", "opencv"]))


def _apply(changes: dict) -> dict:
    data = json.loads(json.dumps(BASE))
    for (sec, key), value in changes.items():
        target = data["regions"][0] if sec == "regions.0" else data.setdefault(sec, {})
        target[key] = value
    return data


SECTIONS = {"camera": CameraConfig, "recognizer": RecognizerConfig, "tracker": TrackerConfig, "mqtt": MqttConfig,
            "outbox": OutboxConfig, "health": HealthConfig, "align": AlignConfig}


def valid_value(key_path: tuple[str, str]) -> st.SearchStrategy:
    """A value of the right type and range for a key (so that mutated configs are often valid)."""
    from device.config import _CHECKS

    sec, name = key_path
    if sec not in SECTIONS:
        return plausible
    cls = SECTIONS[sec]
    default = getattr(cls(), name)
    check = _CHECKS.get(cls, {}).get(name)
    lo, hi = check if isinstance(check, tuple) and check and not isinstance(check[0], str) else (None, None)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(0 if lo is None else lo, 1000 if hi is None else hi)
    if isinstance(default, float):
        return st.floats(0.01 if lo is None else lo, 1000.0 if hi is None else hi)
    if isinstance(check, tuple) and check and isinstance(check[0], str):
        return st.sampled_from(check)
    return st.just(default)


mutated = st.lists(st.sampled_from(KEY_PATHS).flatmap(
    lambda kp: st.tuples(st.just(kp), st.one_of(valid_value(kp), valid_value(kp), valid_value(kp), anything))),
    max_size=4).map(dict).map(_apply)

random_configs = st.fixed_dictionaries({}, optional={
    "device_id": st.one_of(st.sampled_from(["dev-1", "", "a b", "x" * 65]), anything),
    "camera": st.one_of(section(CameraConfig), st.fixed_dictionaries(
        {"source": st.just("folder"), "path": st.just(".")},
        optional={"width": st.integers(0, 20_000), "height": st.integers(0, 20_000), "interval_s": number})),
    "align": st.one_of(section(AlignConfig), st.fixed_dictionaries(
        {"enabled": st.booleans()}, optional={"reference": scalars, "markers": st.lists(st.fixed_dictionaries(
            {}, optional={"name": scalars, "box": boxes}), max_size=3) | anything})),
    "recognizer": section(RecognizerConfig),
    "tracker": section(TrackerConfig),
    "mqtt": st.one_of(section(MqttConfig), st.fixed_dictionaries({}, optional={
        "password": st.one_of(st.just(SECRET), st.integers(), st.lists(st.just(SECRET))),
        "password_file": scalars, "port": number, "tls": anything})),
    "outbox": section(OutboxConfig),
    "health": section(HealthConfig),
    "regions": st.one_of(st.lists(region, max_size=4), anything),
    "extra": anything,
})
configs = st.one_of(mutated, mutated, random_configs)


def _check_config_case(data: dict, base: Path) -> str:
    t0 = time.monotonic()
    try:
        cfg = parse_config(data, file="fuzz.toml", base=base, check_model=False)
    except ConfigError as exc:
        assert exc.messages and all(m.startswith("fuzz.toml") for m in exc.messages), exc.messages
        assert SECRET not in str(exc), "a password was echoed in a config error"
        outcome = "error"
    else:
        assert isinstance(cfg, Config) and cfg.regions
        outcome = "ok"
    assert time.monotonic() - t0 < SLOW_CASE_S
    return outcome


def test_config_loader_fuzz(tmp_path: Path):
    """>= 1,000 generated config documents: a Config or a ConfigError naming the file, nothing else."""
    outcomes: dict[str, int] = {}

    @fuzz(N_CONFIGS)
    @given(configs)
    def case(data: dict) -> None:
        kind = _check_config_case(data, tmp_path)
        outcomes[kind] = outcomes.get(kind, 0) + 1

    case()
    print("configs:", outcomes)
    assert sum(outcomes.values()) >= 1000, outcomes
    assert outcomes.get("ok", 0) > 0, "the generator never produced a valid config: widen it"


TOML_PIECES = ['device_id = "d"\n', "[camera]\n", 'source = "folder"\npath = "."\n', "width = 480\nheight = 320\n",
               "[[regions]]\n", 'name = "a"\nbox = [1, 2, 30, 20]\n', "[mqtt]\n", 'password = "' + SECRET + '"\n',
               "port = 99999\n", "x = [[[[\n", "= =\n", "a = 1\na = 2\n", "\x00", "\ufeff", "nan = nan\n",
               "box = [inf, -inf, nan, 1e400]\n", "[regions]\n", "]]\n", 'pattern = "(?P<x>"\n']


@fuzz(N_TOML)
@given(st.lists(st.one_of(st.sampled_from(TOML_PIECES), st.text(max_size=20)), max_size=12),
       st.sampled_from([None, "utf-16", "latin-1-junk", "deep"]))
def test_config_file_fuzz(tmp_path_factory, pieces: list[str], mangle: str | None):
    """Generated TOML text (mangled, binary, deeply nested) through ``load_config``: ConfigError at worst."""
    path = tmp_path_factory.getbasetemp() / "fuzz-config.toml"
    text = "".join(pieces)
    if mangle == "deep":
        text = "x = " + "[" * 3000 + "]" * 3000 + "\n" + text
    data = text.encode("utf-16") if mangle == "utf-16" else text.encode("utf-8", "surrogatepass")
    if mangle == "latin-1-junk":
        data += b"\xff\xfe\x80"
    path.write_bytes(data)
    try:
        load_config(path, check_model=False)
    except ConfigError as exc:
        assert str(path) in exc.messages[0] and SECRET not in str(exc)


# -- frames and images ---------------------------------------------------------------------------------------

DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.bool_, np.complex64, object, "U2", "M8[s]"]
FILLS = ["zeros", "full", "random", "nan", "inf", "neg", "huge", "stripes"]
SPEC, NORM = InputSpec(height=32, width=128), Normalisation()
CAM = 24  # the camera size the frame-path cases are checked against


def make_array(h: int, w: int, channels: int | None, dtype: object, fill: str, seed: int, layout: str) -> object:
    """One odd image: any shape, dtype, fill and memory layout (or not an array at all)."""
    rng = np.random.default_rng(seed)
    if layout == "not-array":
        return [None, b"\x89PNG", 3, [[1, 2], [3, 4]], np.float64(3.0), np.zeros(()), "frame"][seed % 7]
    shape = (h, w) if channels is None else (h, w, channels)
    if layout == "4d":
        shape = (*shape, 2)
    base = rng.integers(0, 256, size=shape).astype(np.float64)
    with np.errstate(all="ignore"):
        values = {"zeros": base * 0, "full": base * 0 + 255, "random": base, "nan": base * np.nan,
                  "inf": base * np.inf,
                  "neg": -base, "huge": base * 1e30, "stripes": (base * 0 + np.arange(shape[1]).reshape(
                      (1, shape[1]) + (1,) * (len(shape) - 2)) % 2 * 255) if shape[1] else base}[fill]
    with np.errstate(all="ignore"):
        try:
            arr = values.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            arr = np.zeros(shape, dtype=dtype)
    if layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "strided" and arr.ndim >= 2:
        arr = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)[::2, ::-2]
    elif layout == "readonly":
        arr.flags.writeable = False
    return arr


class ListSource(FrameSource):
    """Hands out one prepared object per read."""

    name = "fuzz"

    def __init__(self) -> None:
        self.next: object = None

    def read(self) -> np.ndarray:
        return self.next  # type: ignore[return-value]


class CardReader:
    """A recognizer with a card (so the pipeline preprocesses crops with ``to_input``) and no model."""

    card = SimpleNamespace(input=SPEC, normalisation=NORM)

    def read_input(self, model_input: np.ndarray, allowed: str | None = None) -> Read:
        assert model_input.shape == (SPEC.height, SPEC.width) and model_input.dtype == np.float32
        assert np.isfinite(model_input).all()
        return Read("1", 0.9, (0.9,))


def _region(name: str, box: list[int]):
    from device.config import RegionConfig
    from device.regions import Box

    return RegionConfig(name=name, box=Box(*box))


REGIONS = (_region("inside", [2, 2, 16, 12]), _region("edge", [CAM - 4, CAM - 4, 4, 4]))


def test_image_and_frame_fuzz():
    """>= 6,000 odd arrays through to_gray / to_input and the daemon's frame path (Capture -> regions)."""
    counts = {"cases": 0, "image_error": 0, "frames": 0, "skipped": 0}
    source, reader = ListSource(), CardReader()
    capture = Capture(CameraConfig(source="folder", width=CAM, height=CAM), source)

    @fuzz(N_FRAMES)
    @given(st.integers(0, 40), st.integers(0, 40), st.sampled_from([None, None, 0, 1, 2, 3, 3, 4, 5]),
           st.sampled_from(DTYPES), st.sampled_from(FILLS), st.integers(0, 2**31),
           st.sampled_from(["c", "c", "fortran", "strided", "readonly", "not-array", "4d"]), st.booleans())
    def case(h, w, channels, dtype, fill, seed, layout, camera_sized):
        if camera_sized:
            h = w = CAM
        arr = make_array(h, w, channels, dtype, fill, seed, layout)
        counts["cases"] += 1
        t0 = time.monotonic()
        for fn in (to_gray, lambda a: to_input(a, SPEC, NORM)):
            try:
                out = fn(arr)
            except ImageError:
                counts["image_error"] += 1
            else:
                assert isinstance(out, np.ndarray) and out.size and np.isfinite(out.astype(np.float64)).all()
        source.next = arr
        frame = capture.read(time.monotonic())  # must never raise: a Frame or a counted skip
        if frame is None:
            counts["skipped"] += 1
            assert capture.last_error
        else:
            counts["frames"] += 1
            assert frame.image.dtype == np.uint8 and frame.image.shape[:2] == (CAM, CAM)
            results = read_regions(frame.image, REGIONS, reader)  # what the daemon runs on every frame
            assert [r.name for r in results] == ["inside", "edge"]
        assert time.monotonic() - t0 < SLOW_CASE_S

    case()
    print("arrays/frames:", counts)
    assert counts["cases"] >= N_FRAMES and counts["frames"] > 100 and counts["skipped"] > 100, counts


def _encoded_samples() -> list[tuple[str, bytes]]:
    import cv2

    rng = np.random.default_rng(7)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    colour = rng.integers(0, 256, (17, 13, 3), dtype=np.uint8)
    deep = rng.integers(0, 65535, (9, 11), dtype=np.uint16)
    out = []
    for ext, img in ((".png", gray), (".png", colour), (".png", deep), (".jpg", colour), (".bmp", gray),
                     (".tif", colour), (".webp", colour), (".pgm", gray), (".ppm", colour), (".tif", deep)):
        ok, buf = cv2.imencode(ext, img)
        assert ok, ext
        out.append((ext, buf.tobytes()))
    return out


ENCODED = _encoded_samples()


def _mutate(data: bytes, how: str, pos: int, junk: bytes) -> bytes:
    pos = pos % max(1, len(data))
    if how == "truncate":
        return data[:pos]
    if how == "flip":
        return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]
    if how == "insert":
        return data[:pos] + junk + data[pos:]
    if how == "overwrite":
        return data[:pos] + junk + data[pos + len(junk):]
    if how == "header-only":
        return data[:min(len(data), 8 + pos % 40)]
    if how == "huge-dims" and data[:4] == b"\x89PNG":  # IHDR width/height -> 2^31-1 (CRC now wrong too)
        return data[:16] + b"\x7f\xff\xff\xff\x7f\xff\xff\xff" + data[24:]
    if how == "junk":
        return junk
    return data


def test_image_file_fuzz(tmp_path: Path):
    """>= 4,000 corrupt / truncated / odd encoded images through ``load_image`` (and on to ``to_input``)."""
    counts = {"cases": 0, "decoded": 0, "image_error": 0}
    path = tmp_path / "fuzz"

    @fuzz(N_FILES)
    @given(st.integers(0, len(ENCODED) - 1), st.sampled_from(
        ["truncate", "flip", "insert", "overwrite", "header-only", "huge-dims", "junk", "none"]),
        st.integers(0, 10_000), st.binary(max_size=64))
    def case(index, how, pos, junk):
        ext, data = ENCODED[index]
        target = path.with_suffix(ext)
        target.write_bytes(_mutate(data, how, pos, junk))
        counts["cases"] += 1
        t0 = time.monotonic()
        try:
            image = load_image(target)
        except ImageError as exc:
            counts["image_error"] += 1
            assert str(target) in str(exc)
        else:
            counts["decoded"] += 1
            try:
                to_input(image, SPEC, NORM)
            except ImageError:
                pass
        assert time.monotonic() - t0 < SLOW_CASE_S

    case()
    print("image files:", counts)
    assert counts["cases"] >= N_FILES and counts["decoded"] and counts["image_error"], counts
    assert counts["cases"] + N_FRAMES >= 10_000


def test_load_image_special_files(tmp_path: Path):
    """A directory, an empty file, a missing file, a FIFO: clear ImageErrors, no hang on the FIFO."""
    import os

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    cases = [tmp_path / "empty.png", tmp_path / "dir.png", tmp_path / "missing.png"]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.png")
    for path in cases:
        with pytest.raises(ImageError, match=str(path.name)):
            load_image(path)


# -- the daemon on odd frames, with the real model ------------------------------------------------------------

MODEL = Path(__file__).resolve().parent.parent / "models" / "edgeocr-crnn.tflite"
DEMO = Path(__file__).resolve().parent.parent / "firmware_config" / "replay-demo.toml"


@pytest.mark.skipif(not MODEL.is_file(), reason="needs the shipped model models/edgeocr-crnn.tflite")
def test_daemon_survives_odd_frames_with_the_real_model(tmp_path: Path):
    """The replay demo's four regions (with alignment) on 60 odd frames: each is read or skipped, none fails."""
    from device.daemon import Daemon

    cfg = load_config(DEMO)
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, enabled=False), camera=replace(cfg.camera, interval_s=0.0),
                  health=replace(cfg.health, state_dir=str(tmp_path / "state")))
    h, w = cfg.camera.height, cfg.camera.width
    frames = []
    for seed in range(60):
        dtype, fill, channels = DTYPES[seed % 10], FILLS[seed % len(FILLS)], [None, 1, 3, 4][seed % 4]
        frames.append(make_array(h, w, channels, dtype, fill, seed, ["c", "fortran", "strided"][seed % 3]))
    frames += [np.zeros((w, h), np.uint8), None, np.zeros((h, w, 2), np.uint8)]

    class Frames(FrameSource):
        name = "odd frames"

        def __init__(self) -> None:
            self.i = 0

        def read(self) -> np.ndarray:
            self.i += 1
            return frames[(self.i - 1) % len(frames)]  # type: ignore[return-value]

    daemon = Daemon(cfg, source=Frames(), out=io.StringIO())
    assert daemon.run(max_frames=len(frames)) == 0
    assert daemon.frame_errors == 0, "a frame raised inside the pipeline"
    assert daemon.capture.frames + daemon.capture.bad_frames == len(frames)
    assert daemon.capture.bad_frames >= 3


# -- MQTT commands ----------------------------------------------------------------------------------------------

def _command_daemon(tmp_path: Path):
    from daemon_helpers import ScriptedReader

    from device.config import RegionConfig
    from device.daemon import Daemon
    from device.regions import Box

    regions = (RegionConfig(name="energy", box=Box(0, 0, 40, 20), chars="0123456789.", decimals=1),
               RegionConfig(name="label", kind="text", box=Box(0, 20, 40, 20), chars=None))
    cfg = Config("fuzzdev", CameraConfig(source="folder", path=str(tmp_path), width=64, height=48, interval_s=0),
                 AlignConfig(), RecognizerConfig(), TrackerConfig(), MqttConfig(enabled=False), OutboxConfig(),
                 HealthConfig(state_dir=str(tmp_path / "state"), persist_interval_s=0), regions)

    class Still(FrameSource):
        name = "still"

        def read(self) -> np.ndarray:
            return np.full((48, 64), 200, np.uint8)

    return Daemon(cfg, source=Still(), recognizer=ScriptedReader([("12345", 0.99)]), out=io.StringIO())


verbs = st.one_of(st.sampled_from(["reread", "read", "snapshot", "set/energy", "set/label", "set/nope", "set",
                                   "set_reference/energy", "set/energy/x", "cmd/set/energy", "../../etc",
                                   "set/+", "#", "", "/", "SET/energy"]),
                  st.text(alphabet=string.printable + "é/\x00", max_size=40))
payloads = st.one_of(st.binary(max_size=300), st.sampled_from([b"123.4", b"0", b"-5", b"1e9", b"nan", b"inf",
                                                               b"12.3.4", b"\xff\xfe", b"9" * 40, b"A-12 LOT 7",
                                                               b"x" * 5000, b"{\"value\": 1}", b"\x00", b""]))


def test_command_fuzz(tmp_path: Path):
    """>= 1,000 generated commands into the daemon: none raises, only a valid ``set/<region>`` changes state."""
    daemon = _command_daemon(tmp_path)
    daemon.run(max_frames=2)  # a frame, so snapshot has something to draw
    counts = {"cases": 0, "changed": 0}

    @fuzz(N_COMMANDS)
    @given(verbs, payloads)
    def case(verb: str, payload: bytes) -> None:
        before = {n: t.persisted()["value"] for n, t in daemon.trackers.items()}
        published = daemon.published
        daemon.command(f"edgeocr/fuzzdev/cmd/{verb}", payload)
        daemon._handle_commands()  # the loop's command step: never raises
        counts["cases"] += 1
        after = {n: t.persisted()["value"] for n, t in daemon.trackers.items()}
        if after != before:
            counts["changed"] += 1
            name = verb.split("/cmd/", 1)[-1].removeprefix("cmd/").strip("/")
            action, _, region = name.partition("/")
            assert action in ("set", "set_reference") and region in daemon.trackers, (verb, payload)
            text = payload.decode("utf-8").strip()
            assert len(text) <= 256 and daemon.published == published + 1
            if region == "energy":
                assert set(text) <= set("0123456789.") and float(after["energy"]) == pytest.approx(float(text))
            else:
                assert after["label"] == text

    case()
    print("commands:", counts)
    assert counts["cases"] >= N_COMMANDS and counts["changed"] > 0, counts
    assert daemon.run(max_frames=1) == 0  # and the loop still runs


def test_publisher_passes_only_own_enabled_unretained_commands():
    """The MQTT side: disabled -> nothing; another device's topic, a retained command -> nothing."""
    from device.publish import Publisher

    class NoOutbox:
        def depth(self) -> int:
            return 0

    got: list[tuple[str, bytes]] = []

    def msg(topic: str, payload: bytes = b"1", retain: bool = False) -> SimpleNamespace:
        return SimpleNamespace(topic=topic, payload=payload, retain=retain)

    off = Publisher(MqttConfig(commands=False), "dev1", NoOutbox(), on_command=lambda t, p: got.append((t, p)))
    on = Publisher(MqttConfig(commands=True), "dev1", NoOutbox(), on_command=lambda t, p: got.append((t, p)))
    off._on_cmd(None, None, msg("edgeocr/dev1/cmd/reread"))
    on._on_cmd(None, None, msg("edgeocr/dev2/cmd/reread"))
    on._on_cmd(None, None, msg("edgeocr/dev10/cmd/reread"))
    on._on_cmd(None, None, msg("edgeocr/dev1/cmd/reread", retain=True))
    assert got == []
    on._on_cmd(None, None, msg("edgeocr/dev1/cmd/set/energy", b"12"))
    assert got == [("set/energy", b"12")]

    def boom(topic: str, payload: bytes) -> None:
        raise RuntimeError("handler bug")

    on.on_command = boom
    on._on_cmd(None, None, msg("edgeocr/dev1/cmd/reread"))  # logged, not raised into paho's thread


def test_json_state_of_fuzzed_text_is_valid_json():
    """A text reading with odd characters still makes one valid JSON state payload."""
    from device.tracker import Reading

    for text in ["\x00", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "é\n\"}", "\\"]:
        state = Reading("label", text, text, 0.5, (0.5,), "ok", 1.0, 1).to_state()
        assert json.loads(json.dumps(state, ensure_ascii=False))["value"] == text
