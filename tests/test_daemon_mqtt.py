"""End to end: ``edgeocr run`` as a subprocess on the replay demo, against a real Mosquitto.

Each publish_state takes two consecutive outbox seqs (state, then value), so the state seqs a consumer
must see, with nothing lost, are exactly 1, 3, 5, ... up to the last one allocated.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Broker, Collector, wait_until

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "firmware_config" / "replay-demo.toml"
SAMPLES = REPO / "firmware_config" / "samples"
MODEL = REPO / "models" / "edgeocr-crnn.tflite"
DEV = "demo"

pytestmark = pytest.mark.skipif(
    not (MODEL.is_file() and DEMO.is_file()),
    reason=f"needs the shipped model {MODEL.relative_to(REPO)} and {DEMO.relative_to(REPO)} "
    "(produced by the convert pipeline / bundled with the daemon)",
)


def write_config(tmp: Path, broker: Broker) -> Path:
    """The replay demo with absolute sample paths, a fast frame rate, our broker and a tmp state folder."""
    text = DEMO.read_text(encoding="utf-8").replace('"samples/', f'"{SAMPLES}/')
    text = re.sub(r"(?m)^interval_s = [\d.]+", "interval_s = 0.05", text, count=1)
    sections = {
        "mqtt": f'enabled = true\nhost = "127.0.0.1"\nport = {broker.port}\nreconnect_min_s = 0.1\n'
                "reconnect_max_s = 0.5\nstats_interval_s = 0.5\ncommands = true\n",
        "outbox": 'path = "outbox.sqlite"\n',
        "health": f'state_dir = "{tmp / "state"}"\npersist_interval_s = 1\n',
    }
    for name, body in sections.items():
        text, n = re.subn(rf"(?ms)^\[{name}\]\n.*?(?=^\[|\Z)", f"[{name}]\n{body}\n", text)
        if n == 0:
            text += f"\n[{name}]\n{body}"
    path = tmp / "edgeocr.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Daemon:
    """``edgeocr run --config FILE`` in a subprocess; output in files under tmp."""

    def __init__(self, tmp: Path, config: Path, n: int):
        self.log = tmp / f"daemon{n}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "device.cli", "-v", "run", "--config", str(config)],
                                         cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)

    def signal(self, sig: int, timeout_s: float = 15.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"daemon did not exit on {sig!r}:\n{self.text()[-3000:]}") from None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def run_daemon(tmp_path: Path):
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        d = Daemon(tmp_path, config, len(started))
        started.append(d)
        return d

    yield start
    for d in started:
        d.ensure_stopped()


def state_seqs(col: Collector) -> list[int]:
    """Seqs of every state message received, in arrival order (duplicates included)."""
    return [json.loads(p)["seq"] for t, p, _ in list(col.messages) if t.startswith(f"edgeocr/{DEV}/")
            and t.endswith("/state")]


def first_seen(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]


def outbox_rows(tmp: Path) -> tuple[int, list[int]]:
    """(last seq ever allocated, seqs still waiting) read from the daemon's outbox file."""
    db = sqlite3.connect(tmp / "state" / "outbox.sqlite")
    try:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        left = [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        db.close()
    return (last[0] if last else 0), left


def assert_complete_and_ordered(col: Collector, last_seq: int) -> None:
    """Every state seq 1, 3, ... <= last_seq arrived; first arrivals are in order."""
    got = first_seen(state_seqs(col))
    assert got == sorted(got), "states arrived out of order (after dedup by seq)"
    want = list(range(1, last_seq + 1, 2))
    missing = sorted(set(want) - set(got))
    assert not missing, f"lost {len(missing)} reading(s), e.g. seq {missing[:10]}"


def test_readings_discovery_stats_and_sigterm(broker, subscribe, run_daemon, tmp_path: Path):
    col = subscribe(broker, ["edgeocr/#", "homeassistant/#"])
    d = run_daemon(write_config(tmp_path, broker))
    avail = f"edgeocr/{DEV}/available"
    assert col.wait_for(lambda m: len(state_seqs(col)) >= 12 and col.on(f"edgeocr/{DEV}/stats"), 30), d.text()[-3000:]
    assert col.on(avail)[0][0] == b"online"
    energy = json.loads(col.on(f"edgeocr/{DEV}/energy/state")[0][0])
    assert {"value", "raw", "confidence", "chars", "status", "ts", "seq"} <= set(energy)
    assert re.fullmatch(r"\d+\.\d", col.on(f"edgeocr/{DEV}/energy/value")[0][0].decode())
    assert {t for t, _, _ in col.messages if t.startswith("homeassistant/")} == {
        f"homeassistant/sensor/{DEV}/{r}/config" for r in ("energy", "water", "temperature", "label")}
    stats = json.loads(col.on(f"edgeocr/{DEV}/stats")[-1][0])
    assert stats["fps"] > 0 and "outbox_depth" in stats and stats["uptime_s"] > 0

    assert d.signal(signal.SIGTERM) == 0
    assert col.wait_for(lambda m: col.on(avail)[-1][0] == b"offline", 5)
    last, left = outbox_rows(tmp_path)
    assert left == []  # flushed before exit
    assert col.wait_for(lambda m: set(range(1, last + 1, 2)) <= set(state_seqs(col)), 5)
    assert_complete_and_ordered(col, last)
    late = subscribe(broker, [avail])
    assert late.wait_for(lambda m: m == [(avail, b"offline", True)], 5)  # retained


def test_broker_restart_mid_run_loses_nothing(make_broker, subscribe, run_daemon, tmp_path: Path):
    broker = make_broker(persistent=True)
    col = subscribe(broker, ["edgeocr/#"], persistent=True)
    d = run_daemon(write_config(tmp_path, broker))
    assert col.wait_for(lambda m: len(state_seqs(col)) >= 10, 30), d.text()[-3000:]
    broker.stop()
    seen_before = len(state_seqs(col))
    time.sleep(1.5)  # the daemon keeps reading into its outbox
    broker.start()
    assert col.wait_for(lambda m: len(first_seen(state_seqs(col))) >= seen_before + 10, 15), d.text()[-3000:]
    assert d.signal(signal.SIGTERM) == 0
    last, left = outbox_rows(tmp_path)
    assert left == []
    assert col.wait_for(lambda m: set(range(1, last + 1, 2)) <= set(state_seqs(col)), 30)
    assert_complete_and_ordered(col, last)
    assert "lost the connection to MQTT broker" in d.text()


def test_sigkill_and_restart_loses_nothing_in_the_outbox(make_broker, subscribe, run_daemon, tmp_path: Path):
    broker = make_broker(persistent=True)
    col = subscribe(broker, ["edgeocr/#"], persistent=True)
    config = write_config(tmp_path, broker)
    avail = f"edgeocr/{DEV}/available"
    # killed while connected: the broker publishes the last will
    a = run_daemon(config)
    assert col.wait_for(lambda m: len(state_seqs(col)) >= 6, 30), a.text()[-3000:]
    a.signal(signal.SIGKILL)
    assert col.wait_for(lambda m: col.on(avail)[-1][0] == b"offline", 5)
    # killed while the broker is away, with readings waiting in the outbox
    b = run_daemon(config)
    assert col.wait_for(lambda m: col.on(avail)[-1][0] == b"online", 30), b.text()[-3000:]
    broker.stop()
    assert wait_until(lambda: len(outbox_rows(tmp_path)[1]) >= 10, 20), b.text()[-3000:]
    b.signal(signal.SIGKILL)
    last_killed, waiting = outbox_rows(tmp_path)
    assert waiting and waiting[-1] <= last_killed
    # restarted: everything that reached the outbox arrives, in order, once after dedup
    broker.start()
    c = run_daemon(config)
    assert col.wait_for(lambda m: set(w for w in waiting if w % 2) <= set(state_seqs(col))
                        and max(state_seqs(col)) > last_killed, 30), c.text()[-3000:]  # backlog, then new ones
    assert c.signal(signal.SIGTERM) == 0
    last, left = outbox_rows(tmp_path)
    assert left == [] and last > last_killed
    assert col.wait_for(lambda m: set(range(1, last + 1, 2)) <= set(state_seqs(col)), 30)
    assert_complete_and_ordered(col, last)
