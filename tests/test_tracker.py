"""Tracker: voting, statuses, meter rules (monotonic, rate, rollover, rolling digits), heartbeat, persistence."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from device.config import RegionConfig, TrackerConfig
from device.ctc import Read
from device.regions import Box
from device.tracker import RegionTracker, StateStore, parse_meter

BOX = Box(0, 0, 10, 10)


def meter(**tracker) -> RegionTracker:
    defaults = dict(vote_k=2, vote_n=3, min_confidence=0.5, heartbeat_s=100.0)
    return RegionTracker(RegionConfig("m", box=BOX, decimals=1, tracker=TrackerConfig(**{**defaults, **tracker})))


def r(text: str, conf: float = 0.9, chars: tuple[float, ...] | None = None) -> Read:
    return Read(text, conf, chars if chars is not None else tuple([conf] * len(text)))


def feed(tracker: RegionTracker, reads: list, t0: float = 0.0, step: float = 1.0) -> list:
    out = []
    for i, read in enumerate(reads):
        reading = tracker.update(read, t0 + i * step)
        if reading is not None:
            out.append(reading)
    return out


@pytest.mark.parametrize(
    ("text", "decimals", "value", "canonical", "wrap"),
    [("012345", 1, 1234.5, "1234.5", 100000.0), ("12.50", 0, 12.5, "12.50", 100.0), ("7", 0, 7.0, "7", 10.0),
     ("-3.2", 0, -3.2, "-3.2", 10.0), ("0 1 2", 0, 12.0, "12", 1000.0)],
)
def test_parse_meter(text, decimals, value, canonical, wrap):
    m = parse_meter(text, decimals)
    assert m is not None and m.value == pytest.approx(value) and m.text == canonical and m.wrap == wrap


@pytest.mark.parametrize("text", ["", "12a", "1.2.3", "--1", "."])
def test_parse_meter_rejects(text):
    assert parse_meter(text) is None


def test_value_accepted_only_when_k_of_n_agree():
    t = meter()
    assert t.update(r("012345"), 0.0) is None  # one vote is not enough
    out = t.update(r("012345"), 1.0)
    assert out is not None and out.value == "1234.5" and out.status == "ok" and out.raw == "012345"
    assert t.update(r("012345"), 2.0) is None  # unchanged: nothing new to publish
    assert t.update(r("012346"), 3.0) is None
    out = t.update(r("012346"), 4.0)
    assert out.value == "1234.6" and out.seq == 2
    state = out.to_state()
    assert set(state) == {"value", "raw", "confidence", "chars", "status", "ts", "seq"}


def test_flickering_reads_never_reach_a_vote():
    t = meter(vote_k=3, vote_n=5)
    assert feed(t, [r("1"), r("2"), r("3"), r("1"), r("2"), r("3")]) == []


@pytest.mark.parametrize(
    ("read", "status"),
    [(r("012345", conf=0.2), "low_confidence"), (r("12a45"), "pattern_mismatch"), (None, "no_read"), (r(""), "no_read")],
)
def test_held_back_status_published_after_it_persists(read, status):
    t = meter()
    feed(t, [r("012345"), r("012345")])
    out = feed(t, [read] * 3, t0=10.0)
    assert len(out) == 1  # after vote_n frames in a row, once
    assert out[0].status == status and out[0].value == "1234.5"  # the last accepted value is kept
    assert out[0].raw == (read.text if read else "")
    back = feed(t, [r("012345")] * 2, t0=20.0)
    assert [b.status for b in back] == ["ok"]  # back to ok once k reads agree again: published at once


def test_pattern_is_a_full_match():
    t = RegionTracker(RegionConfig("m", box=BOX, pattern=r"\d{6}", tracker=TrackerConfig(vote_k=1, vote_n=1)))
    assert t.update(r("12345"), 0.0).status == "pattern_mismatch"
    assert t.update(r("123456"), 1.0).value == "123456"


def test_monotonic_decrease_is_implausible_unless_allowed():
    t = meter()
    feed(t, [r("012345")] * 2)
    out = feed(t, [r("012300")] * 4, t0=10.0)
    assert [o.status for o in out] == ["implausible"] and out[0].value == "1234.5" and out[0].raw == "012300"
    t2 = meter(allow_decrease=True)
    feed(t2, [r("012345")] * 2)
    assert feed(t2, [r("012300")] * 2, t0=10.0)[-1].value == "1230.0"


def test_max_rate_per_hour():
    t = meter(max_rate_per_h=1.0)
    feed(t, [r("000100")] * 2)  # 10.0 at t=1
    assert feed(t, [r("000200")] * 4, t0=60.0)[0].status == "implausible"  # +10 in a minute
    out = feed(t, [r("000200")] * 2, t0=11 * 3600.0)  # +10 in 11 h: fine
    assert out[-1].value == "20.0" and out[-1].status == "ok"


def test_rollover_wraps_forward():
    t = meter()
    feed(t, [r("999985")] * 2)
    assert feed(t, [r("000012")] * 2, t0=10.0)[-1].value == "1.2"
    t2 = meter(rollover=False)
    feed(t2, [r("999985")] * 2)
    assert feed(t2, [r("000012")] * 4, t0=10.0)[0].status == "implausible"


def test_rolling_last_digit_resolved_with_char_confidence():
    t = meter(char_confidence=0.6)
    feed(t, [r("004711")] * 2)
    # the last drum is half-way between 1 and 2 and was read as '7' with low confidence
    rolling = r("004717", conf=0.3, chars=(0.95, 0.95, 0.95, 0.95, 0.95, 0.3))
    first = t.update(rolling, 5.0)
    assert first is None and t.window[-1] == "471.1"  # resolved to the smallest forward step, not 471.7
    assert t.update(rolling, 6.0) is None  # confidence from the sure digits: accepted as the same value
    out = feed(t, [r("004712")] * 2, t0=7.0)
    assert out[-1].value == "471.2"


def test_heartbeat_republishes_the_state():
    t = meter(heartbeat_s=30.0)
    feed(t, [r("012345")] * 2)
    assert t.update(r("012345"), 20.0) is None
    beat = t.update(r("012345"), 40.0)
    assert beat is not None and beat.value == "1234.5" and beat.status == "ok" and beat.seq == 2


def test_text_region_fields_and_mismatch():
    region = RegionConfig("label", kind="text", box=BOX, fields=(r"LOT (?P<lot>\d+)",),
                          tracker=TrackerConfig(vote_k=1, vote_n=1))
    t = RegionTracker(region)
    out = t.update(r("PN X\nLOT 42"), 0.0, {"lot": "42"})
    assert out.value == "PN X\nLOT 42" and out.to_state()["fields"] == {"lot": "42"}
    out = t.update(r("PN X\nL0T 4Z"), 1.0, None)  # the fields regex did not match
    assert out.status == "pattern_mismatch" and out.fields == {"lot": "42"}


def test_set_reference_command():
    t = meter()
    feed(t, [r("012345")] * 2)
    out = t.set_reference("2000", 10.0)
    assert out.value == "2000" and out.status == "ok"
    assert feed(t, [r("012345")] * 4, t0=20.0)[0].status == "implausible"  # now below the reference
    with pytest.raises(ValueError, match="expected a number"):
        t.set_reference("abc", 30.0)


def test_state_store_atomic_round_trip_and_restart(tmp_path: Path):
    store = StateStore(tmp_path / "state" / "last.json")
    assert store.load() == {}
    t = meter()
    feed(t, [r("012345")] * 2, t0=100.0)
    store.save({"m": t.persisted()})
    assert not list((tmp_path / "state").glob("*.tmp"))
    saved = json.loads((tmp_path / "state" / "last.json").read_text())
    assert saved["regions"]["m"]["value"] == "1234.5" and saved["regions"]["m"]["raw_digits"] == "012345"
    # after a restart the history holds: a lower value is still implausible
    again = RegionTracker.restore(replace(t.region), store.load()["m"])
    assert again.memory.value == "1234.5"
    assert feed(again, [r("001000")] * 4, t0=200.0)[0].status == "implausible"
    assert feed(again, [r("012345")] * 2, t0=300.0)[-1].status == "ok"


def test_state_store_survives_a_corrupt_file(tmp_path: Path, caplog):
    path = tmp_path / "last.json"
    path.write_text("{not json")
    assert StateStore(path).load() == {}
    assert "cannot read saved values" in caplog.text
