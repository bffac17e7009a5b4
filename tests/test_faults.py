"""Fault injection, CI-sized: the same faults as ``bench/faults.py`` (which runs 10+ outages of each), fewer
times. For each: no reading that reached the outbox is lost, none is kept twice after dedup by seq, and the
daemon stays up. Real Mosquitto on 127.0.0.1; the network cut is a loopback TCP proxy."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import faults

pytestmark = pytest.mark.skipif(not (REPO / "models" / "edgeocr-crnn.tflite").is_file(),
                                reason="needs the shipped model models/edgeocr-crnn.tflite")


@pytest.fixture
def rig(tmp_path: Path):
    r = faults.Rig(tmp_path)  # skips when mosquitto is not installed
    yield r
    r.close()


def check(row: faults.Row) -> None:
    print(row.cells())
    assert row.readings > 0, row
    assert row.lost == 0, f"{row.fault}: lost {row.lost} of {row.readings} stored readings"
    assert row.dup == 0, f"{row.fault}: {row.dup} duplicate(s) after dedup"
    assert row.up, f"{row.fault}: the daemon did not stay up"
    assert all(r < faults.WAIT_S for r in row.recovery_s), f"{row.fault}: no recovery within {faults.WAIT_S} s"


def test_broker_restarted_repeatedly(rig):
    check(faults.broker_restarts(rig, 3, random.Random(1)))


def test_network_cut_to_the_broker(rig):
    check(faults.network_cuts(rig, 2, random.Random(2)))


def test_camera_corrupt_frozen_and_gone(rig):
    row = faults.camera_faults(rig, 1, random.Random(3))
    check(row)
    assert "frames skipped" in row.note and not row.note.startswith("0 ")


def test_camera_device_lost_and_reopened(rig):
    row = faults.camera_device_gone(rig, 2, random.Random(7))
    if row.note.startswith("skipped"):
        pytest.skip(row.note)
    check(row)
    assert " 0 reopen" not in row.note, row.note


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_outbox_full_or_read_only_during_the_run(rig, kind):
    """The outbox cannot be written for a while: readings are held (logged), then stored in order."""
    (row,) = faults.disk_faults_inprocess(rig, 2, random.Random(4), kinds=(kind,))
    check(row)
    assert row.note.startswith("outbox failed 2/2"), row.note


def test_sigkill_at_random_moments(rig):
    check(faults.sigkills(rig, 3, random.Random(5)))


def test_wall_clock_jumps(rig):
    check(faults.clock_jumps(rig, 2, random.Random(6)))


def test_outbox_that_cannot_be_opened_at_start_is_retried(rig, tmp_path: Path, monkeypatch):
    """The state folder cannot be created at start-up: the daemon stays up, holds readings, retries the outbox,
    then stores and delivers the held readings in order."""
    import io
    import threading

    import device.daemon as daemon_module
    from device.config import load_config

    monkeypatch.setattr(daemon_module, "OUTBOX_RETRY_S", 0.5)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the state folder's parent should be")
    folder = tmp_path / "start"
    folder.mkdir()
    config = faults.write_config(folder, rig.broker.port, device="ro-start", state_dir=blocker / "state")
    consumer = rig.consumer("ro-start")
    daemon = daemon_module.Daemon(load_config(config), config, out=io.StringIO())
    assert daemon.publisher is None and daemon.outbox is None
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert faults.wait_until(lambda: len(daemon.held) >= 4, 20)
        held = len(daemon.held)
        assert daemon.stats(daemon.clock())["outbox_held"] >= held
        blocker.unlink()  # the folder can be made now
        assert faults.wait_until(lambda: daemon.publisher is not None and not daemon.held, 20)
        assert faults.wait_until(lambda: len(consumer.seen()) >= held, 20)
    finally:
        daemon.request_stop()
        thread.join(30)
    assert not thread.is_alive()
    row = faults.Row("outbox unopenable at start")
    last, left = faults.outbox_seqs(blocker / "state")
    assert not left
    faults.wait_until(lambda: set(range(1, last + 1, 2)) <= consumer.seen(), 10)
    consumer.score(last, row)
    assert row.readings >= held and row.lost == 0 and row.dup == 0, row


def test_held_readings_are_bounded_and_counted(tmp_path: Path, caplog):
    """While the outbox fails, at most HELD_MAX readings wait in memory; the overflow is dropped and counted."""
    import io

    import device.daemon as daemon_module
    from device.config import load_config
    from device.outbox import OutboxError

    class FailingPublisher:
        def publish_state(self, region: str, state: dict, value: str) -> int:
            raise OutboxError("outbox x: cannot write (database or disk is full)")

        def stop(self) -> None:
            pass

    config = faults.write_config(tmp_path, 1, device="bounded")
    daemon = daemon_module.Daemon(load_config(config), config, out=io.StringIO())
    daemon._stop_mqtt()
    daemon.publisher = FailingPublisher()
    for i in range(daemon_module.HELD_MAX + 5):
        daemon.store_reading("energy", {"value": str(i)}, str(i))
    assert len(daemon.held) == daemon_module.HELD_MAX and daemon.held_dropped == 5
    assert daemon.held[0][2] == "5"  # the oldest went first
    assert caplog.text.count("readings are held in memory") == 1  # one ERROR per outage, not per reading
    daemon.close()
    assert "they are lost" in caplog.text


def test_outbox_is_not_moved_aside_on_an_io_error(tmp_path: Path, monkeypatch):
    """Full / read-only / I/O errors at open raise OutboxError and keep the file; only corruption moves it."""
    import sqlite3

    from device.config import OutboxConfig
    from device.outbox import Outbox, OutboxError

    box = Outbox(OutboxConfig(path="o.sqlite"), tmp_path)
    box.append("t", b"kept", True)
    box.close()

    def failing_open(self):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Outbox, "_open", failing_open)
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(OutboxConfig(path="o.sqlite"), tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    again = Outbox(OutboxConfig(path="o.sqlite"), tmp_path)
    assert [m.payload for m in again.peek(10)] == [b"kept"]
    again.close()
