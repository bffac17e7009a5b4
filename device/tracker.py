"""Per-region temporal logic (time passed in, no clock inside): format check, k-of-n vote, meter rules
(numeric parse, monotonic, maximum rate, rollover, per-digit confidence), change/heartbeat publishing,
and the last accepted values persisted across restarts.

Statuses: ``ok``, ``low_confidence``, ``pattern_mismatch``, ``implausible``, ``no_read``. A held-back
reading is published with the last accepted value, its status and the raw text, so a user sees why.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.config import RegionConfig
from device.ctc import Read

logger = logging.getLogger(__name__)

STATUSES = ("ok", "low_confidence", "pattern_mismatch", "implausible", "no_read")
_MAX_RESOLVED_DIGITS = 3


@dataclass(frozen=True)
class Reading:
    """What is published for a region: value (last accepted, may be None), this frame's raw text and status."""

    region: str
    value: str | None
    raw: str
    confidence: float
    chars: tuple[float, ...]
    status: str
    ts: float
    seq: int
    fields: dict[str, str] | None = None

    def to_state(self) -> dict[str, Any]:
        """The state JSON object: value, raw, confidence, chars, status, ts, seq (+ fields for text)."""
        state: dict[str, Any] = {
            "value": self.value, "raw": self.raw, "confidence": round(self.confidence, 4),
            "chars": [round(c, 4) for c in self.chars], "status": self.status, "ts": round(self.ts, 3), "seq": self.seq,
        }
        if self.fields is not None:
            state["fields"] = dict(self.fields)
        return state


@dataclass(frozen=True)
class Meter:
    """A parsed meter text: value, canonical string, digits shown, decimal places and the wrap-around value."""

    value: float
    text: str
    digits: str
    decimals: int

    @property
    def wrap(self) -> float:
        return 10.0 ** (len(self.digits) - self.decimals)


def parse_meter(text: str, decimals: int = 0) -> Meter | None:
    """``'012345'`` with 1 implied decimal -> 1234.5; a shown '.' wins over ``decimals``; None if not numeric."""
    text = text.replace(" ", "")
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", text):
        return None
    if "." in text:
        whole, frac = text.split(".", 1)
        shown = len(frac)
        value = float(text)
    else:
        shown, value = decimals, int(text) / 10**decimals
    digits = re.sub(r"\D", "", text)
    return Meter(value, f"{value:.{shown}f}", digits, shown)


@dataclass
class _Remembered:
    value: str | None = None
    raw_digits: str = ""
    accepted_ts: float | None = None
    seq: int = 0


@dataclass
class RegionTracker:
    """Feeds on one read per frame (``update``); returns a ``Reading`` when one should be published."""

    region: RegionConfig
    memory: _Remembered = field(default_factory=_Remembered)

    def __post_init__(self) -> None:
        tc = self.region.tracker
        self.window: deque[str | None] = deque(maxlen=tc.vote_n)
        self.published_status: str | None = None
        self.published_value: str | None = None
        self.last_publish_s: float | None = None
        self.pending_status, self.pending_count = "", 0
        self.fields: dict[str, str] | None = {} if self.region.kind == "text" else None
        self.last: Reading | None = None
        self.dirty = False
        self._shown: dict[str, str] = {}

    @classmethod
    def restore(cls, region: RegionConfig, saved: dict | None) -> RegionTracker:
        """A tracker that remembers the last accepted value persisted before a restart."""
        mem = _Remembered()
        if isinstance(saved, dict) and isinstance(saved.get("value"), (str, type(None))):
            ts = saved.get("ts")
            mem = _Remembered(saved.get("value"), str(saved.get("raw_digits", "")),
                              float(ts) if isinstance(ts, (int, float)) else None, int(saved.get("seq", 0) or 0))
        return cls(region, mem)

    def persisted(self) -> dict[str, Any]:
        """The memory to write to the state file."""
        m = self.memory
        return {"value": m.value, "raw_digits": m.raw_digits, "ts": m.accepted_ts, "seq": m.seq}

    # -- per frame ---------------------------------------------------------------------------------------
    def update(self, read: Read | None, now_s: float, fields: dict[str, str] | None = None) -> Reading | None:
        """One frame's read (None: nothing read) at time ``now_s`` -> a Reading to publish, or None."""
        raw = read.text.strip() if read is not None else ""
        conf = read.confidence if read is not None else 0.0
        chars = read.char_confidences if read is not None else ()
        if len(self._shown) > 64:
            self._shown.clear()
        status, candidate = self._judge(raw, conf, chars, fields)
        self.window.append(candidate)
        accepted_now = False
        if candidate is not None:
            voted = self._voted()
            if voted is None:
                status = None  # valid but not yet confirmed: no status change
            elif voted == self.memory.value:
                status = "ok"
            elif self._plausible(voted, now_s):
                self._accept(voted, now_s)
                status, accepted_now = "ok", True
            else:
                status = "implausible"
        if fields is not None and status == "ok":
            self.fields = dict(fields)
        publish = accepted_now or self._status_settled(status)
        due = self.last_publish_s is None or now_s - self.last_publish_s >= self.region.tracker.heartbeat_s
        if not publish and not (due and self.published_status is not None):
            self._remember(raw, conf, chars, status or self.published_status or "no_read", now_s)
            return None
        final = status if publish and status is not None else (self.published_status or "no_read")
        return self._publish(raw, conf, chars, final, now_s)

    def _judge(self, raw: str, conf: float, chars: tuple[float, ...],
               fields: dict[str, str] | None) -> tuple[str, str | None]:
        """This frame alone: (status, candidate value or None)."""
        if not raw:
            return "no_read", None
        region = self.region
        text = raw.replace(" ", "") if region.kind == "meter" else raw
        if region.kind == "meter":
            text, conf = self._resolve_digits(text, conf, chars)
        if conf < region.tracker.min_confidence:
            return "low_confidence", None
        if region.pattern and not re.fullmatch(region.pattern, text):
            return "pattern_mismatch", None
        if region.kind == "meter":
            meter = parse_meter(text, region.decimals)
            if meter is None:
                return "pattern_mismatch", None
            self._shown[meter.text] = meter.digits  # digits as the meter shows them (leading zeros)
            return "ok", meter.text
        if region.fields and fields is None:
            return "pattern_mismatch", None
        return "ok", text

    def _resolve_digits(self, text: str, conf: float, chars: tuple[float, ...]) -> tuple[str, float]:
        """Rolling digits: a low-confidence digit is replaced by the choice (as read, as before, before + 1)
        that keeps the meter plausible with the smallest step; confidence then comes from the sure digits."""
        tc, prev = self.region.tracker, self.memory.raw_digits
        if len(chars) != len(text) or self.memory.value is None or len(prev) != len(text.replace(".", "")):
            return text, conf
        low = [i for i, (c, ch) in enumerate(zip(chars, text)) if c < tc.char_confidence and ch.isdigit()]
        if not low or len(low) > _MAX_RESOLVED_DIGITS or len(low) == len(text):
            return text, conf
        pos = [sum(ch.isdigit() for ch in text[:i]) for i in low]  # index into the digits-only string
        last = float(self.memory.value)
        best: tuple[float, str] | None = None
        options = [sorted({text[i], prev[p], str((int(prev[p]) + 1) % 10)}) for i, p in zip(low, pos)]
        for combo in itertools.product(*options):
            cand = list(text)
            for i, digit in zip(low, combo):
                cand[i] = digit
            meter = parse_meter("".join(cand), self.region.decimals)
            if meter is None:
                continue
            step = self._step(last, meter)
            if step is not None and (best is None or step < best[0]):
                best = (step, "".join(cand))
        if best is None:
            return text, conf
        sure = [c for i, c in enumerate(chars) if i not in low]
        return best[1], min(sure) if sure else conf

    def _step(self, last: float, meter: Meter, wrap: float | None = None) -> float | None:
        """Forward step from the last value (rollover-aware); None when a decrease is not allowed."""
        tc = self.region.tracker
        delta = meter.value - last
        if delta >= 0:
            return delta
        wrap = wrap or meter.wrap
        if tc.rollover and 0.5 * wrap <= last < wrap and 0 <= meter.value < 0.5 * wrap:
            return meter.value + wrap - last  # e.g. 99998.5 -> 00001.2 on a 5-digit counter
        return abs(delta) if tc.allow_decrease else None

    def _voted(self) -> str | None:
        counts = Counter(v for v in self.window if v is not None)
        if not counts:
            return None
        value, n = counts.most_common(1)[0]
        return value if n >= self.region.tracker.vote_k else None

    def _plausible(self, value: str, now_s: float) -> bool:
        if self.region.kind != "meter" or self.memory.value is None:
            return True
        meter = parse_meter(value)
        if meter is None:
            return False
        shown = self._shown.get(value, meter.digits)  # the digits as read, with leading zeros
        step = self._step(float(self.memory.value), meter, 10.0 ** (len(shown) - meter.decimals))
        if step is None:
            return False
        rate = self.region.tracker.max_rate_per_h
        if rate > 0 and self.memory.accepted_ts is not None:
            hours = max(0.0, now_s - self.memory.accepted_ts) / 3600.0
            if step > rate * hours + 10.0 ** -meter.decimals:
                return False
        return True

    def _accept(self, value: str, now_s: float) -> None:
        meter = parse_meter(value) if self.region.kind == "meter" else None
        if meter is not None:
            self.memory.raw_digits = self._shown.get(value, meter.digits)
        self.memory.value, self.memory.accepted_ts = value, now_s
        self.dirty = True
        logger.debug("%s: accepted %s", self.region.name, value)

    def _status_settled(self, status: str | None) -> bool:
        """A status change is published at once for ok, after vote_n frames in a row for the others."""
        if status is None:
            return False
        if status == self.published_status:
            self.pending_status, self.pending_count = "", 0
            return status == "ok" and self.memory.value != self.published_value
        if status == "ok":
            return True
        if status == self.pending_status:
            self.pending_count += 1
        else:
            self.pending_status, self.pending_count = status, 1
        return self.pending_count >= self.region.tracker.vote_n

    def _remember(self, raw: str, conf: float, chars: tuple[float, ...], status: str, now_s: float) -> None:
        self.last = Reading(self.region.name, self.memory.value, raw, conf, chars, status, now_s, self.memory.seq,
                            self.fields)

    def _publish(self, raw: str, conf: float, chars: tuple[float, ...], status: str, now_s: float) -> Reading:
        self.memory.seq += 1
        self.dirty = True
        self.published_status, self.published_value, self.last_publish_s = status, self.memory.value, now_s
        self.pending_status, self.pending_count = "", 0
        self._remember(raw, conf, chars, status, now_s)
        assert self.last is not None
        return self.last

    # -- commands -----------------------------------------------------------------------------------------
    def set_reference(self, value: str, now_s: float) -> Reading:
        """Set the meter's value (after a meter swap or an implausible jump); publishes it as ``ok``.

        Refused (ValueError) unless the region could have read it: at most 256 characters, no control
        characters but newlines, only the region's ``chars``; meters: a number of at most 15 digits.
        """
        value = value.strip()
        extra = {c for c in value if c not in "\n "} - set(self.region.chars) if self.region.chars else set()
        if len(value) > 256 or any(ord(c) < 32 and c != "\n" for c in value) or extra:
            raise ValueError(f"{self.region.name}: reference value {value[:40]!r}: expected at most 256 of the "
                             "region's characters (chars)")
        if self.region.kind == "meter" and sum(c.isdigit() for c in value) > 15:
            raise ValueError(f"{self.region.name}: reference value {value[:40]!r}: expected at most 15 digits")
        meter = parse_meter(value, 0) if self.region.kind == "meter" else None
        if self.region.kind == "meter" and meter is None:
            raise ValueError(f"{self.region.name}: reference value {value!r}: expected a number")
        text = meter.text if meter else value
        self.memory.value, self.memory.accepted_ts = text, now_s
        self.memory.raw_digits = ""
        self.window.clear()
        return self._publish("", 1.0, (), "ok", now_s)

    def current(self, now_s: float) -> Reading:
        """The state as it stands, republished (a re-read command or a heartbeat)."""
        last = self.last
        return self._publish(last.raw if last else "", last.confidence if last else 0.0,
                             last.chars if last else (), self.published_status or "no_read", now_s)


class StateStore:
    """The last accepted values in a small JSON file, written atomically (tmp + fsync + rename)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        """The saved regions, or {} when there is no (readable) file."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("%s: cannot read saved values (%s); starting without history", self.path, exc)
            return {}
        regions = data.get("regions") if isinstance(data, dict) else None
        return regions if isinstance(regions, dict) else {}

    def save(self, regions: dict[str, dict]) -> None:
        """Replace the file atomically; the old content survives a crash or power cut mid-write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        payload = json.dumps({"version": 1, "regions": regions}, indent=1, sort_keys=True).encode()
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
