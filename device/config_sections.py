"""Config parsing for ``[[regions]]``, ``[align]`` and ``[mqtt]`` (geometry, regexes, frame bounds, secrets);
see ``device.config``."""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from device.config import (
    METER_DEFAULT_CHARS,
    NAME_RE,
    AlignConfig,
    CameraConfig,
    Marker,
    MqttConfig,
    RegionConfig,
    TrackerConfig,
    _Loader,
    _tracker_checks,
    warn_if_exposed,
)
from device.regions import Box, Quad, quad_area

_REGION_SCALARS = ("kind", "rotation_deg", "pattern", "decimals", "unit", "device_class", "state_class", "max_lines")
_REGION_CHECKS = {"kind": ("meter", "text"), "rotation_deg": (-360, 360), "decimals": (0, 9), "max_lines": (1, 32)}


def parse_box(ld: _Loader, value: Any, key: str) -> Box | None:
    """``[x, y, w, h]`` in pixels."""
    ok = isinstance(value, list) and len(value) == 4 and all(_is_num(v) for v in value)
    if not ok or value[2] <= 0 or value[3] <= 0 or value[0] < 0 or value[1] < 0:
        ld.err(key, value, "expected [x, y, w, h] with x, y >= 0 and w, h > 0 (pixels)")
        return None
    return Box(*(int(round(v)) for v in value))


def parse_quad(ld: _Loader, value: Any, key: str) -> Quad | None:
    """``[[x, y], [x, y], [x, y], [x, y]]``: TL, TR, BR, BL."""
    ok = isinstance(value, list) and len(value) == 4 and all(
        isinstance(p, list) and len(p) == 2 and all(_is_num(v) for v in p) for p in value
    )
    quad = Quad(tuple((float(p[0]), float(p[1])) for p in value)) if ok else None
    if quad is None or quad_area(quad) < 4.0:
        ld.err(key, value, "expected four [x, y] corners (TL, TR, BR, BL) enclosing an area")
        return None
    return quad


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_in_frame(ld: _Loader, geometry: Box | Quad, cam: CameraConfig, key: str, value: Any) -> None:
    """A region (or marker) must lie inside the configured camera frame."""
    for x, y in geometry.corners():
        if x < 0 or y < 0 or x > cam.width or y > cam.height:
            ld.err(key, value, f"expected a region inside the {cam.width}x{cam.height} frame (camera.width x camera.height)")
            return


def compile_regex(ld: _Loader, value: Any, key: str, named: bool = False) -> str:
    """Compile a regex now so that a typo is a config error, not a runtime one."""
    if not isinstance(value, str):
        ld.err(key, value, "expected a regular expression string")
        return ""
    try:
        compiled = re.compile(value)
    except (re.error, OverflowError) as exc:
        ld.err(key, value, f"expected a valid regular expression ({exc})")
        return ""
    except RecursionError:
        ld.err(key, value, "expected a valid regular expression (nested too deeply)")
        return ""
    if named and not compiled.groupindex:
        ld.err(key, value, "expected a regular expression with named groups, e.g. (?P<lot>[0-9]+)")
        return ""
    return value


def parse_regions(
    ld: _Loader, data: Any, cam: CameraConfig, defaults: TrackerConfig, charset: str | None
) -> tuple[RegionConfig, ...]:
    """``[[regions]]``: at least one; names unique; geometry inside the frame; regexes compiled."""
    if not isinstance(data, list) or not data:
        ld.err("regions", data, "expected at least one [[regions]] table")
        return ()
    regions, seen = [], set()
    for i, raw in enumerate(data):
        key = f"regions[{i}]"
        if not isinstance(raw, dict):
            ld.err(key, raw, "expected a table")
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            ld.err(f"{key}.name", name, "expected 1-64 letters, digits, '_' or '-'")
            name = f"region{i}"
        else:
            key = f"regions.{name}"
            if name in seen:
                ld.err(f"{key}.name", name, "expected a unique region name")
            seen.add(name)
        region = _region(ld, raw, key, name, cam, defaults, charset)
        if region is not None:
            regions.append(region)
    return tuple(regions)


def _region(
    ld: _Loader, raw: dict, key: str, name: str, cam: CameraConfig, defaults: TrackerConfig, charset: str | None
) -> RegionConfig | None:
    known = {"name", "box", "quad", "chars", "fields", "tracker", *_REGION_SCALARS}
    ld.unknown(raw, known, key)
    base = RegionConfig(name=name, tracker=defaults)
    values = {k: ld.scalar(raw[k], getattr(base, k), _REGION_CHECKS.get(k), f"{key}.{k}") for k in _REGION_SCALARS if k in raw}
    region = replace(base, **values)
    if ("box" in raw) == ("quad" in raw):
        ld.err(key, {k: raw.get(k) for k in ("box", "quad")}, "expected exactly one of box = [x, y, w, h] or quad = [[x, y] x 4]")
        return None
    if "box" in raw:
        geometry, gkey = parse_box(ld, raw["box"], f"{key}.box"), "box"
    else:
        geometry, gkey = parse_quad(ld, raw["quad"], f"{key}.quad"), "quad"
    if geometry is None:
        return None
    check_in_frame(ld, geometry, cam, f"{key}.{gkey}", raw[gkey])
    region = replace(region, **{gkey: geometry})
    chars = raw.get("chars", METER_DEFAULT_CHARS if region.kind == "meter" else None)
    if chars is not None:
        if not isinstance(chars, str) or not chars:
            ld.err(f"{key}.chars", chars, "expected a non-empty string of allowed characters")
            chars = None
        elif charset is not None and set(chars) - set(charset):
            missing = "".join(sorted(set(chars) - set(charset)))
            ld.err(f"{key}.chars", chars, f"expected characters of the model's charset ({missing!r} are not)")
    pattern = compile_regex(ld, region.pattern, f"{key}.pattern") if region.pattern else ""
    field_list = raw.get("fields", [])
    field_list = [field_list] if isinstance(field_list, str) else field_list
    if not isinstance(field_list, list):
        ld.err(f"{key}.fields", field_list, "expected a regex or a list of regexes with named groups")
        field_list = []
    if field_list and region.kind != "text":
        ld.err(f"{key}.fields", field_list, "expected fields only on kind = 'text' regions")
    regexes = tuple(compile_regex(ld, f, f"{key}.fields[{j}]", named=True) for j, f in enumerate(field_list))
    tracker = ld.section(TrackerConfig, raw.get("tracker"), f"{key}.tracker", base=defaults)
    _tracker_checks(ld, tracker, f"{key}.tracker")
    return replace(region, chars=chars, pattern=pattern, fields=regexes, tracker=tracker)


def parse_align(ld: _Loader, data: Any, cam: CameraConfig) -> AlignConfig:
    """``[align]`` with ``markers = [{name, box}, ...]`` cut from ``reference`` (frame-sized image)."""
    data = dict(ld.table(data, "align"))
    raw_markers = data.pop("markers", [])
    align = ld.section(AlignConfig, data, "align", skip=("markers",))
    if not align.enabled:
        return align
    reference = ld.path(align.reference, "align.reference")
    if not align.reference:
        ld.err("align.reference", align.reference, "expected a reference image (align.enabled = true)")
    elif Path(reference).is_file():
        _check_reference(ld, reference, cam)
    markers = []
    if not isinstance(raw_markers, list) or not raw_markers:
        ld.err("align.markers", raw_markers, "expected a list of {name, box} tables (align.enabled = true)")
        raw_markers = []
    for i, raw in enumerate(raw_markers):
        key = f"align.markers[{i}]"
        if not isinstance(raw, dict):
            ld.err(key, raw, "expected a table {name = '...', box = [x, y, w, h]}")
            continue
        ld.unknown(raw, {"name", "box"}, key)
        box = parse_box(ld, raw.get("box"), f"{key}.box")
        if box is not None:
            check_in_frame(ld, box, cam, f"{key}.box", raw.get("box"))
            markers.append(Marker(str(raw.get("name", f"m{i}")), box))
    if markers and align.min_markers > len(markers):
        ld.err("align.min_markers", align.min_markers, f"expected at most the number of markers ({len(markers)})")
    return replace(align, reference=reference, markers=tuple(markers))


def _check_reference(ld: _Loader, reference: str, cam: CameraConfig) -> None:
    from device.errors import ImageError
    from device.preprocess import load_image

    try:
        image = load_image(reference)
    except ImageError as exc:
        ld.err("align.reference", reference, f"expected a readable image ({exc})")
        return
    h, w = image.shape[:2]
    if (w, h) != (cam.width, cam.height):
        ld.err("align.reference", reference, f"expected a {cam.width}x{cam.height} image like the camera's frames, got {w}x{h}")


def parse_mqtt(ld: _Loader, data: Any) -> MqttConfig:
    """``[mqtt]``: ranges, topics, TLS files, and the password read now from a file or a systemd credential."""
    mq = ld.section(MqttConfig, data, "mqtt")
    if mq.reconnect_max_s < mq.reconnect_min_s:
        ld.err("mqtt.reconnect_max_s", mq.reconnect_max_s, f"expected >= mqtt.reconnect_min_s ({mq.reconnect_min_s})")
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(mq, key)
        if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
            ld.err(f"mqtt.{key}", value, "expected a topic without '#', '+' or leading/trailing '/'")
    paths = {k: ld.path(getattr(mq, k), f"mqtt.{k}") for k in ("ca_file", "cert_file", "key_file", "password_file")}
    if not mq.tls and (mq.ca_file or mq.cert_file or mq.tls_insecure):  # never plain text by accident
        key = "ca_file" if mq.ca_file else "cert_file" if mq.cert_file else "tls_insecure"
        ld.err(f"mqtt.{key}", getattr(mq, key), "expected mqtt.tls = true with it (else the connection is plain text)")
    if bool(paths["cert_file"]) != bool(paths["key_file"]):
        ld.err("mqtt.cert_file", mq.cert_file, "expected mqtt.cert_file and mqtt.key_file together")
    sources = [k for k in ("password", "password_file", "password_credential") if getattr(mq, k)]
    if len(sources) > 1:
        ld.errors.append(f"{ld.file}: mqtt: {', '.join(sources)}: expected at most one password source")
    password = mq.password
    if paths["key_file"]:
        warn_if_exposed(Path(paths["key_file"]), "mqtt.key_file")
    if paths["password_file"] and Path(paths["password_file"]).is_file():
        warn_if_exposed(Path(paths["password_file"]), "mqtt.password_file")
        password = _read_secret(ld, Path(paths["password_file"]), "mqtt.password_file", mq.password_file)
    elif mq.password_credential:
        creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
        if not creds:
            ld.err("mqtt.password_credential", mq.password_credential,
                   "expected $CREDENTIALS_DIRECTORY to be set (systemd LoadCredential=)")
        else:
            warn_if_exposed(Path(creds) / mq.password_credential, "mqtt.password_credential")
            password = _read_secret(ld, Path(creds) / mq.password_credential, "mqtt.password_credential",
                                    mq.password_credential)
    return replace(mq, password=password, **paths)


def _read_secret(ld: _Loader, path: Path, key: str, value: str) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        ld.err(key, value, f"expected a readable UTF-8 file ({getattr(exc, 'strerror', None) or exc})")
        return ""
