"""The sqlite outbox: durable, ordered, acknowledged, bounded (real files in tmp_path)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from device.config import OutboxConfig
from device.outbox import Outbox, resolve_outbox_path


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_append_peek_ack_in_order(tmp_path: Path):
    box = Outbox(OutboxConfig(path="out.sqlite"), tmp_path)
    seqs = [box.append(f"t/{i}", f"p{i}".encode(), retain=i % 2 == 0) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    rows = box.peek(10)
    assert [r.seq for r in rows] == seqs
    assert [(r.topic, r.payload, r.retain) for r in rows[:2]] == [("t/0", b"p0", True), ("t/1", b"p1", False)]
    assert [r.seq for r in box.peek(2, after_seq=seqs[1])] == seqs[2:4]
    box.ack(seqs[0])
    box.ack(seqs[0])  # twice: ignored
    box.ack_many([seqs[2], 999])
    assert box.depth() == 3
    assert [r.seq for r in box.peek(10)] == [seqs[1], seqs[3], seqs[4]]
    box.close()


def test_relative_path_resolves_against_state_dir(tmp_path: Path):
    assert resolve_outbox_path(OutboxConfig(path="a/b.sqlite"), tmp_path) == tmp_path / "a" / "b.sqlite"
    assert resolve_outbox_path(OutboxConfig(path="/x/y.sqlite"), tmp_path) == Path("/x/y.sqlite")
    box = Outbox(OutboxConfig(path="sub/dir/out.sqlite"), tmp_path)  # parents are created
    assert (tmp_path / "sub" / "dir" / "out.sqlite").is_file()
    box.close()


def test_wal_and_full_sync(tmp_path: Path):
    box = Outbox(OutboxConfig(path="out.sqlite"), tmp_path)
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_survives_reopen_and_seq_never_goes_back(tmp_path: Path):
    cfg = OutboxConfig(path="out.sqlite")
    box = Outbox(cfg, tmp_path)
    a, b = box.append("t", b"a", True), box.append("t", b"b", True)
    box.ack(b)  # the newest row is gone; its seq must not be handed out again
    box.close()
    box = Outbox(cfg, tmp_path)
    assert box.depth() == 1 and box.peek(5)[0].payload == b"a"
    c = box.append("t", b"c", True)
    assert c > b > a
    box.ack_many([a, c])
    box.close()
    box = Outbox(cfg, tmp_path)
    assert box.depth() == 0 and box.append("t", b"d", False) > c and box.last_seq > c
    box.close()


def test_append_many_is_one_transaction_and_payload_may_use_its_seq(tmp_path: Path):
    box = Outbox(OutboxConfig(path="out.sqlite"), tmp_path)
    seqs = box.append_many([("s", lambda seq: b'{"seq":%d}' % seq, True), ("v", b"42", True)])
    rows = box.peek(5)
    assert rows[0].payload == b'{"seq":%d}' % seqs[0] and rows[1].payload == b"42"

    def boom(seq: int) -> bytes:
        raise RuntimeError("payload failed")

    try:
        box.append_many([("x", b"1", False), ("y", boom, False)])
    except RuntimeError:
        pass
    assert box.depth() == 2 and [r.topic for r in box.peek(5)] == ["s", "v"]  # rolled back as a whole
    box.close()


def test_max_rows_drops_oldest_counts_and_logs(tmp_path: Path, caplog):
    box = Outbox(OutboxConfig(path="out.sqlite", max_rows=3), tmp_path)
    with caplog.at_level(logging.WARNING, logger="device.outbox"):
        seqs = [box.append("t", str(i).encode(), True) for i in range(5)]
    assert box.depth() == 3 and box.dropped == 2
    assert [r.seq for r in box.peek(10)] == seqs[2:]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "dropped 1 undelivered" in warnings[0].getMessage()
    assert len(warnings) == 1  # rate limited while the queue stays full
    box.close()


def test_max_age_drops_old_rows(tmp_path: Path, caplog):
    clock = FakeClock()
    cfg = OutboxConfig(path="out.sqlite", max_age_s=100.0)
    box = Outbox(cfg, tmp_path, clock=clock)
    box.append("t", b"old", True)
    clock.t += 60
    box.append("t", b"mid", True)
    clock.t += 60  # "old" is now 120 s old
    with caplog.at_level(logging.WARNING, logger="device.outbox"):
        assert box.prune() == 1
    assert [r.payload for r in box.peek(5)] == [b"mid"] and box.dropped == 1
    assert "max_age_s=100" in caplog.text
    box.close()
    clock.t += 100  # on reopen the bounds apply too
    box = Outbox(cfg, tmp_path, clock=clock)
    assert box.depth() == 0 and box.dropped == 1
    box.close()


def test_corrupt_file_is_moved_aside(tmp_path: Path, caplog):
    (tmp_path / "out.sqlite").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="device.outbox"):
        box = Outbox(OutboxConfig(path="out.sqlite"), tmp_path)
    assert box.depth() == 0 and box.append("t", b"x", True) == 1
    assert list(tmp_path.glob("out.sqlite.corrupt-*")) and "moved aside" in caplog.text
    box.close()


def test_rows_visible_to_another_connection_right_after_append(tmp_path: Path):
    box = Outbox(OutboxConfig(path="out.sqlite"), tmp_path)
    box.append("t", b"x", True)
    other = sqlite3.connect(tmp_path / "out.sqlite")
    assert other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    other.close()
    box.close()
