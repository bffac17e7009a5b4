"""The daemon's configuration: one TOML file -> frozen dataclasses, one section per stage.

Every problem is collected (not just the first) as ``FILE: KEY.PATH = VALUE: expected ...`` and raised
together in one ``ConfigError``; unknown keys are rejected. Relative paths resolve against the
config file's folder. Secrets are read here, at load time, and never logged.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import socket
import stat
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from device.errors import EdgeOCRError
from device.regions import Box, Quad

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SECRET_KEYS = frozenset({"password"})
METER_DEFAULT_CHARS = "0123456789."
logger = logging.getLogger(__name__)


class ConfigError(EdgeOCRError):
    """The config is invalid; ``messages`` lists every problem (file, key path, value, expectation)."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = list(messages)


@dataclass(frozen=True)
class CameraConfig:
    """Where frames come from and how often (``interval_s``; 0 = as fast as possible)."""

    source: str = "picamera2"  # picamera2 | opencv | folder
    device: int = 0  # opencv: V4L2 index (when url is empty)
    url: str = ""  # opencv: rtsp://, http://, or a video file
    path: str = ""  # folder: images replayed in name order
    loop: bool = True  # folder / video file: start again at the end
    width: int = 1280
    height: int = 720
    interval_s: float = 1.0
    exposure_us: int = 0  # picamera2: 0 = auto exposure
    analogue_gain: float = 0.0  # picamera2: 0 = auto
    lens_position: float = -1.0  # picamera2: dioptres; < 0 = continuous autofocus where available
    reopen_min_s: float = 1.0
    reopen_max_s: float = 60.0


@dataclass(frozen=True)
class Marker:
    """A reference-marker template: a box cut from the reference frame."""

    name: str
    box: Box


@dataclass(frozen=True)
class AlignConfig:
    """Optional alignment on reference markers cut from ``reference`` (same size as the camera frame)."""

    enabled: bool = False
    reference: str = ""
    markers: tuple[Marker, ...] = ()
    search_px: int = 64  # how far a marker may move from its reference position
    min_score: float = 0.6  # normalised cross-correlation needed to count a marker as found
    min_markers: int = 1


@dataclass(frozen=True)
class RecognizerConfig:
    """The model (``""``: the shipped one) and interpreter threads."""

    model: str = ""
    threads: int = 1


@dataclass(frozen=True)
class TrackerConfig:
    """Temporal rules per region (``[tracker]`` defaults, overridden by ``[regions.tracker]``)."""

    vote_k: int = 3  # accept when k of the last n reads agree ...
    vote_n: int = 5
    min_confidence: float = 0.5  # ... each at or above this confidence
    char_confidence: float = 0.6  # meters: digits below this are resolved against the last value
    heartbeat_s: float = 300.0
    allow_decrease: bool = False
    max_rate_per_h: float = 0.0  # 0 = no limit
    rollover: bool = True  # counters wrap at 10^digits


@dataclass(frozen=True)
class RegionConfig:
    """One region of the frame to read."""

    name: str
    kind: str = "meter"  # meter | text
    box: Box | None = None
    quad: Quad | None = None
    rotation_deg: float = 0.0  # turn the crop counter-clockwise by this before reading
    chars: str | None = None  # allowed characters; None: meter digits and '.', text anything
    pattern: str = ""  # a valid reading must fully match this regex
    fields: tuple[str, ...] = ()  # text: regexes with named groups -> the "fields" object
    decimals: int = 0  # meter: implied decimal places when no '.' is shown
    unit: str = ""
    device_class: str = ""
    state_class: str = ""
    max_lines: int = 8  # text: at most this many lines
    tracker: TrackerConfig = TrackerConfig()

    @property
    def geometry(self) -> Box | Quad:
        """The box or the quad, whichever is configured."""
        return self.box if self.box is not None else self.quad  # type: ignore[return-value]


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""  # "" -> "edgeocr-<device_id>"
    topic_prefix: str = "edgeocr"
    username: str = ""
    password: str = field(default="", repr=False)  # resolved at load time; never logged
    password_file: str = ""
    password_credential: str = ""  # name of a systemd LoadCredential= credential
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False  # must be explicitly set; default verifies
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    qos: int = 1
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    stats_interval_s: float = 60.0
    heartbeat_s: float = 300.0
    commands: bool = False


@dataclass(frozen=True)
class OutboxConfig:
    path: str = "/var/lib/edgeocr/outbox.sqlite"  # relative paths resolve against the state dir
    max_rows: int = 100_000
    max_age_s: float = 7 * 86400.0


@dataclass(frozen=True)
class HealthConfig:
    """State folder (``""``: ``$STATE_DIRECTORY``, else /var/lib/edgeocr, else ~/.local/state/edgeocr)."""

    state_dir: str = ""
    watchdog: bool = True
    persist_interval_s: float = 10.0  # at most this often write the last accepted values


@dataclass(frozen=True)
class Config:
    """The whole file."""

    device_id: str
    camera: CameraConfig
    align: AlignConfig
    recognizer: RecognizerConfig
    tracker: TrackerConfig
    mqtt: MqttConfig
    outbox: OutboxConfig
    health: HealthConfig
    regions: tuple[RegionConfig, ...]
    path: str = ""


# Per-field checks: (low, high) inclusive ranges (None = open), "pos" (> 0), or a tuple of choices.
_POS = "pos"
_CHECKS: dict[type, dict[str, Any]] = {
    CameraConfig: {
        "source": ("picamera2", "opencv", "folder"), "device": (0, 63), "width": (16, 16384),
        "height": (16, 16384), "interval_s": (0, 86400), "exposure_us": (0, 10_000_000),
        "analogue_gain": (0, 64), "lens_position": (-1, 32), "reopen_min_s": _POS, "reopen_max_s": _POS,
    },
    AlignConfig: {"search_px": (0, 4096), "min_score": (0, 1), "min_markers": (1, 64)},
    RecognizerConfig: {"threads": (1, 16)},
    TrackerConfig: {
        "vote_k": (1, 100), "vote_n": (1, 100), "min_confidence": (0, 1), "char_confidence": (0, 1),
        "heartbeat_s": _POS, "max_rate_per_h": (0, None),
    },
    MqttConfig: {
        "port": (1, 65535), "keepalive_s": (5, 3600), "reconnect_min_s": _POS, "reconnect_max_s": _POS,
        "qos": (0, 2), "stats_interval_s": _POS, "heartbeat_s": _POS,
    },
    OutboxConfig: {"max_rows": (1, None), "max_age_s": _POS},
    HealthConfig: {"persist_interval_s": (0, None)},
}


class _Loader:
    """Collects errors while it converts TOML tables to dataclasses."""

    def __init__(self, file: str, base: Path):
        self.file, self.base, self.errors = file, base, []

    def err(self, key: str, value: Any, expect: str) -> None:
        if key.rsplit(".", 1)[-1] in SECRET_KEYS:  # a mistyped secret is still a secret: never echo it
            value = "<redacted>"
        self.errors.append(f"{self.file}: {key} = {value!r}: {expect}")

    def table(self, data: Any, key: str) -> dict:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.err(key, data, "expected a table")
            return {}
        return data

    def unknown(self, data: dict, known: set[str], key: str) -> None:
        for name in data:
            if name not in known:
                where = f"{key}.{name}" if key else name
                close = difflib.get_close_matches(str(name), sorted(known), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "expected one of " + ", ".join(sorted(known))
                self.errors.append(f"{self.file}: {where}: unknown key, {hint}")

    def scalar(self, value: Any, default: Any, check: Any, key: str) -> Any:
        """Check one value against the type of its default and its range/choices; default on error."""
        if isinstance(default, bool):
            if not isinstance(value, bool):
                return self._bad(key, value, "expected true or false", default)
            return value
        if isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            return self._number(value if ok else None, value, default, check, key, "an integer")
        if isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            return self._number(float(value) if ok else None, value, default, check, key, "a number")
        if not isinstance(value, str):
            return self._bad(key, value, "expected a string", default)
        if isinstance(check, tuple) and check and isinstance(check[0], str) and value not in check:
            return self._bad(key, value, "expected one of " + ", ".join(repr(c) for c in check), default)
        return value

    def _number(self, number: Any, value: Any, default: Any, check: Any, key: str, what: str) -> Any:
        if check == _POS:
            if number is None or number <= 0:
                return self._bad(key, value, f"expected {what} > 0", default)
            return number
        lo, hi = check if isinstance(check, tuple) else (None, None)
        if lo is not None and hi is not None:
            expect = f"expected {what} {lo}-{hi}" if what == "an integer" else f"expected {what} from {lo} to {hi}"
        elif lo is not None:
            expect = f"expected {what} >= {lo}"
        else:
            expect = f"expected {what}"
        if number is None or (lo is not None and number < lo) or (hi is not None and number > hi):
            return self._bad(key, value, expect, default)
        return number

    def _bad(self, key: str, value: Any, expect: str, default: Any) -> Any:
        self.err(key, value, expect)
        return default

    def section(self, cls: type, data: Any, key: str, base: Any = None, skip: tuple[str, ...] = ()) -> Any:
        """Build ``cls`` from a table of scalars; ``base`` supplies the defaults (an instance of cls)."""
        data = self.table(data, key)
        names = {f.name for f in fields(cls)} - set(skip)
        self.unknown(data, names, key)
        base = base if base is not None else cls()
        values = {}
        for name in names & set(data):
            values[name] = self.scalar(data[name], getattr(base, name), _CHECKS.get(cls, {}).get(name), f"{key}.{name}")
        return replace(base, **values)

    def path(self, value: str, key: str, must_exist: bool = True, is_dir: bool = False) -> str:
        if not value:
            return value
        resolved = (self.base / Path(value).expanduser()).resolve()
        if must_exist and not (resolved.is_dir() if is_dir else resolved.is_file()):
            self.err(key, value, f"expected an existing {'folder' if is_dir else 'file'} ({resolved})")
        return str(resolved)


def load_config(path: Path | str, check_model: bool = True) -> Config:
    """Read, validate and resolve a config file; raise ``ConfigError`` listing every problem."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: not UTF-8 text, expected a TOML file"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError([f"{file}: invalid TOML: arrays or tables nested too deeply"]) from None
    warn_if_exposed(path, "config file", secret=_inline_secret(data))
    return parse_config(data, file=file, base=path.resolve().parent, check_model=check_model)


def _inline_secret(data: dict) -> bool:
    mqtt = data.get("mqtt")
    return isinstance(mqtt, dict) and bool(mqtt.get("password"))


def warn_if_exposed(path: Path, what: str, secret: bool = True) -> bool:
    """Log a warning when a file others may change (world-writable) or, if it holds a secret, read.

    Returns True when a warning was logged. Called at load time (start-up and reload), for the config
    file, the password file, the credential and the TLS client key.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # missing files are reported by the checks that need them
    problems = []
    if mode & stat.S_IWOTH:
        problems.append("world-writable")
    if secret and mode & stat.S_IROTH:
        problems.append("world-readable")
    if not problems:
        return False
    logger.warning("%s %s is %s (mode %s): expected chmod %s", what, path, " and ".join(problems),
                   oct(stat.S_IMODE(mode)), "600" if secret else "o-w")
    return True


def parse_config(data: dict, file: str = "config.toml", base: Path | None = None, check_model: bool = True) -> Config:
    """Validate an already parsed TOML document (see ``load_config``)."""
    from device.config_sections import parse_align, parse_mqtt, parse_regions  # keeps this module short

    ld = _Loader(file, base or Path.cwd())
    top = {"device_id", "camera", "align", "recognizer", "tracker", "mqtt", "outbox", "health", "regions"}
    ld.unknown(data, top, "")
    device_id = data.get("device_id", _hostname_id())
    if not isinstance(device_id, str) or not NAME_RE.match(device_id):
        ld.err("device_id", device_id, "expected 1-64 letters, digits, '_' or '-'")
        device_id = "edgeocr"
    camera = ld.section(CameraConfig, data.get("camera"), "camera")
    camera = _camera_checks(ld, camera)
    recognizer = ld.section(RecognizerConfig, data.get("recognizer"), "recognizer")
    recognizer = replace(recognizer, model=ld.path(recognizer.model, "recognizer.model"))
    tracker = ld.section(TrackerConfig, data.get("tracker"), "tracker")
    _tracker_checks(ld, tracker, "tracker")
    mqtt = parse_mqtt(ld, data.get("mqtt"))
    outbox = ld.section(OutboxConfig, data.get("outbox"), "outbox")
    health = ld.section(HealthConfig, data.get("health"), "health")
    health = replace(health, state_dir=ld.path(health.state_dir, "health.state_dir", must_exist=False))
    align = parse_align(ld, data.get("align"), camera)
    charset = _model_charset(ld, recognizer.model) if check_model else None
    regions = parse_regions(ld, data.get("regions"), camera, tracker, charset)
    if ld.errors:
        raise ConfigError(ld.errors)
    return Config(device_id, camera, align, recognizer, tracker, mqtt, outbox, health, regions, path=file)


def _hostname_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:64]
    return name or "edgeocr"


def _camera_checks(ld: _Loader, cam: CameraConfig) -> CameraConfig:
    if cam.reopen_max_s < cam.reopen_min_s:
        ld.err("camera.reopen_max_s", cam.reopen_max_s, f"expected >= camera.reopen_min_s ({cam.reopen_min_s})")
    if cam.source == "folder":
        if not cam.path:
            ld.err("camera.path", cam.path, "expected a folder of images (camera.source = 'folder')")
        return replace(cam, path=ld.path(cam.path, "camera.path", is_dir=True))
    if cam.source == "opencv" and cam.url and "://" not in cam.url:
        return replace(cam, url=ld.path(cam.url, "camera.url"))  # a video file
    return cam


def _tracker_checks(ld: _Loader, tr: TrackerConfig, key: str) -> None:
    if tr.vote_k > tr.vote_n:
        ld.err(f"{key}.vote_k", tr.vote_k, f"expected <= {key}.vote_n ({tr.vote_n})")


def _model_charset(ld: _Loader, model: str) -> str | None:
    """The charset from the model's card (checks that model and card exist); None when unknown."""
    from device.card import card_path_for, load_card
    from device.errors import ModelError
    from device.recognize import default_model_path

    model_path = Path(model) if model else default_model_path()
    if not model_path.is_file():
        ld.err("recognizer.model", model or str(model_path), "expected a .tflite model file (not found)")
        return None
    try:
        return load_card(card_path_for(model_path)).charset
    except ModelError as exc:
        ld.err("recognizer.model", model or str(model_path), f"expected a valid model card beside it ({exc})")
        return None


def resolve_state_dir(health: HealthConfig) -> Path:
    """The state folder: configured, else ``$STATE_DIRECTORY`` (systemd), else a writable default."""
    if health.state_dir:
        return Path(health.state_dir).expanduser()
    env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if env:
        return Path(env)
    system = Path("/var/lib/edgeocr")
    if system.is_dir() and os.access(system, os.W_OK):
        return system
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "edgeocr"


def default_demo_config() -> Path:
    """The bundled replay demo: inside the installed package, else ``firmware_config/`` of a checkout."""
    from importlib import resources

    try:
        packaged = resources.files("device.firmware_config").joinpath("replay-demo.toml")
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "firmware_config" / "replay-demo.toml"
