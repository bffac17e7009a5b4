"""Fault injection against the real daemon: broker outages, network cuts, a failing camera, a full or read-only
state folder, SIGKILL at random moments, wall-clock jumps. Prints one table row per fault:

    readings  state messages the daemon stored in its outbox (each reading is one state + one value row)
    lost      stored readings a consumer never kept (it keeps a state only if its seq is above the last kept)
    dup       readings kept twice after that dedup (same region and frame time under two seqs)
    recovery  seconds from the end of a fault until everything stored before it was delivered (worst case)
    up        whether the daemon process stayed up (SIGKILL rows: restarted, as systemd would, and finished)

    python bench/faults.py                # every fault, 10+ outages each (about 4 minutes)
    python bench/faults.py --long         # 30 outages each, longer phases
    python bench/faults.py --only broker,kill --outages 12

Needs mosquitto (/usr/sbin/mosquitto) and the shipped model. Everything stays on 127.0.0.1; the network cut is a
TCP proxy this script runs; the disk faults use a small tmpfs it mounts (root), else the outbox's own sqlite
limits (PRAGMA max_page_count / query_only) inside an in-process daemon. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
DEMO = REPO / "firmware_config" / "replay-demo.toml"
SAMPLES = REPO / "firmware_config" / "samples"
WAIT_S = 30.0  # the longest any single wait may take

# runs the daemon CLI with time.time() shifted by an offset that SIGUSR1 (+) / SIGUSR2 (-) move by $JUMP_S
CLOCK_SHIM = """
import os, signal, sys, time
_real, _off, _step = time.time, [0.0], float(os.environ.get("JUMP_S", "3600"))
time.time = lambda: _real() + _off[0]
signal.signal(signal.SIGUSR1, lambda *a: _off.__setitem__(0, _off[0] + _step))
signal.signal(signal.SIGUSR2, lambda *a: _off.__setitem__(0, _off[0] - _step))
from device.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Row:
    fault: str
    events: int = 0
    readings: int = 0
    lost: int = 0
    dup: int = 0
    recovery_s: list[float] = field(default_factory=list)
    up: bool = True
    note: str = ""

    def cells(self) -> list[str]:
        rec = f"{max(self.recovery_s):.1f}" if self.recovery_s else "-"
        return [self.fault, str(self.events), str(self.readings), str(self.lost), str(self.dup), rec,
                "yes" if self.up else "NO", self.note]


def write_config(folder: Path, port: int, device: str = "faults", frames: Path | None = None,
                 state_dir: Path | None = None, interval_s: float = 0.05, keepalive_s: int = 5,
                 camera: dict | None = None) -> Path:
    """The replay demo with our broker port, device id, frames folder, state folder and a fast frame rate."""
    text = DEMO.read_text(encoding="utf-8").replace('"samples/', f'"{SAMPLES}/')
    if frames is not None:
        text = text.replace(f'path = "{SAMPLES}/frames"', f'path = "{frames}"')
    text = re.sub(r'(?m)^device_id = .*$', f'device_id = "{device}"', text, count=1)
    text = re.sub(r"(?m)^interval_s = [\d.]+", f"interval_s = {interval_s}", text, count=1)
    sections = {
        "mqtt": f'enabled = true\nhost = "127.0.0.1"\nport = {port}\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n'
                f"keepalive_s = {keepalive_s}\nstats_interval_s = 1\ncommands = false\ndiscovery = false\n",
        "outbox": 'path = "outbox.sqlite"\n',
        "health": f'state_dir = "{state_dir or folder / "state"}"\npersist_interval_s = 1\n',
    }
    for name, body in sections.items():
        text = re.sub(rf"(?ms)^\[{name}\]\n.*?(?=^\[|\Z)", f"[{name}]\n{body}\n", text)
    for key, value in (camera or {}).items():  # [camera] overrides
        line = f"{key} = {json.dumps(value)}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line, text, count=1)
        if not n:
            text = text.replace("[camera]\n", f"[camera]\n{line}\n", 1)
    path = folder / f"{device}.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


STARTED: list[DaemonProc] = []  # killed by Rig.close(), so that a failing scenario leaves no daemon behind


class DaemonProc:
    """``edgeocr run`` as a child process (optionally under the clock shim), output to a log file."""

    def __init__(self, config: Path, log: Path, clock_shim: bool = False, env: dict | None = None):
        args = ["-c", CLOCK_SHIM] if clock_shim else ["-m", "device.cli"]
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("NOTIFY_SOCKET", None)
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, *args, "run", "--config", str(config)], cwd=config.parent,
                                         env=full_env, stdout=out, stderr=subprocess.STDOUT)
        self.log = log
        STARTED.append(self)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait(10)

    def term(self, timeout_s: float = 20.0) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(interval_s)
    return True


def outbox_seqs(state_dir: Path) -> tuple[int, list[int]]:
    """(last seq ever allocated, seqs still waiting), read-only."""
    path = state_dir / "outbox.sqlite"
    if not path.exists():
        return 0, []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        left = [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    except sqlite3.Error:
        return 0, []
    finally:
        db.close()
    return (row[0] if row else 0), left


class Consumer:
    """What a consumer keeps from one device: states whose seq is above the last kept one."""

    def __init__(self, collector, device: str):
        self.col, self.prefix = collector, f"edgeocr/{device}/"

    def states(self) -> list[dict]:
        return [json.loads(p) | {"_region": t.split("/")[2]} for t, p, _ in list(self.col.messages)
                if t.startswith(self.prefix) and t.endswith("/state")]

    def seen(self) -> set[int]:
        return {s["seq"] for s in self.states()}

    def kept(self) -> list[dict]:
        out, top = [], 0
        for s in self.states():
            if s["seq"] > top:
                out.append(s)
                top = s["seq"]
        return out

    def score(self, last_seq: int, row: Row) -> None:
        kept = self.kept()
        keys = [(s["_region"], s["ts"], s["raw"], s["value"]) for s in kept]
        row.readings = len(range(1, last_seq + 1, 2))
        row.lost = len(set(range(1, last_seq + 1, 2)) - {s["seq"] for s in kept})
        row.dup = len(keys) - len(set(keys))

    def recovery(self, state_dir: Path, t_end: float) -> float | None:
        """Seconds from ``t_end`` until every state stored so far was seen (None: not within WAIT_S)."""
        last, _ = outbox_seqs(state_dir)
        want = set(range(1, last + 1, 2))
        if wait_until(lambda: want <= self.seen(), WAIT_S, 0.05):
            return time.monotonic() - t_end
        return None


def record_recovery(row: Row, daemon: DaemonProc, consumer: Consumer) -> None:
    """After a fault ends: time until a new reading arrives (WAIT_S if none), and whether the daemon lived."""
    t_end = time.monotonic()
    before = len(consumer.seen())
    if wait_until(lambda: len(consumer.seen()) > before, WAIT_S, 0.05):  # readings flow again
        row.recovery_s.append(time.monotonic() - t_end)
    else:
        row.recovery_s.append(WAIT_S)
    row.up &= daemon.alive


def finish(row: Row, daemon: DaemonProc, consumer: Consumer, state_dir: Path) -> Row:
    """Stop the daemon (SIGTERM flushes the outbox), wait for delivery, score."""
    row.up = row.up and daemon.alive
    code = daemon.term()
    row.up = row.up and code == 0
    last, left = outbox_seqs(state_dir)
    wait_until(lambda: set(range(1, last + 1, 2)) <= consumer.seen(), 10, 0.05)
    consumer.score(last, row)
    if left:
        row.note += f" {len(left)} left in outbox;"
    return row


class Rig:
    """One broker (persistent sessions), one persistent subscriber, a work folder."""

    def __init__(self, work: Path):
        from conftest import Broker, Collector

        self.work = work
        self.broker = Broker(work / "broker", persistent=True)
        self.broker.start()
        self._collector_cls = Collector
        self.collectors: list = []

    def consumer(self, device: str) -> Consumer:
        col = self._collector_cls(self.broker, [f"edgeocr/{device}/#"], persistent=True)
        self.collectors.append(col)
        return Consumer(col, device)

    def close(self) -> None:
        while STARTED:
            STARTED.pop().kill()
        for c in self.collectors:
            c.close()
        self.broker.stop()


def _start(rig: Rig, name: str, port: int | None = None, **kw) -> tuple[DaemonProc, Consumer, Path]:
    folder = rig.work / name
    folder.mkdir(parents=True, exist_ok=True)
    shim = kw.pop("clock_shim", False)
    env = kw.pop("env", None)
    config = write_config(folder, port or rig.broker.port, device=name, **kw)
    consumer = rig.consumer(name)
    state_dir = kw.get("state_dir") or folder / "state"
    daemon = DaemonProc(config, folder / "daemon.log", clock_shim=shim, env=env)
    return daemon, consumer, state_dir


def _first_states(consumer: Consumer, n: int = 4) -> bool:
    return wait_until(lambda: len(consumer.seen()) >= n, WAIT_S, 0.05)


# -- the faults ------------------------------------------------------------------------------------------------

def broker_restarts(rig: Rig, outages: int, rng: random.Random) -> Row:
    """Stop and restart the broker ``outages`` times while the daemon reads."""
    row = Row("broker stop/start", events=outages)
    daemon, consumer, state_dir = _start(rig, "broker")
    _first_states(consumer)
    for _ in range(outages):
        rig.broker.stop()
        time.sleep(rng.uniform(0.3, 1.5))
        rig.broker.start()
        t_end = time.monotonic()
        rec = consumer.recovery(state_dir, t_end)
        row.recovery_s.append(rec if rec is not None else WAIT_S)
        row.up &= daemon.alive
        time.sleep(rng.uniform(0.2, 1.0))
    return finish(row, daemon, consumer, state_dir)


class CutProxy:
    """A TCP proxy 127.0.0.1:port -> broker; ``cut`` resets every connection and refuses new ones (a dead
    link); ``blackhole`` keeps connections but silently drops their bytes (a blocked port); ``heal``."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.mode = "pass"
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if self.mode == "pass":
                        peers[s].sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def _drop_all(self) -> None:
        with self._lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.mode = "cut"
        self._drop_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def heal(self) -> None:
        if self.mode == "blackhole":
            self._drop_all()  # what was sent into the hole is gone: those sessions cannot continue
        self.mode = "pass"

    def close(self) -> None:
        self._stop.set()
        self._drop_all()
        self.sock.close()


def network_cuts(rig: Rig, outages: int, rng: random.Random, blackhole_s: float = 0.0) -> Row:
    """Cut the link to the broker ``outages`` times (reset), plus one silent blackhole of ``blackhole_s``."""
    row = Row("network cut", events=outages + (1 if blackhole_s else 0))
    proxy = CutProxy(rig.broker.port)
    daemon, consumer, state_dir = _start(rig, "netcut", port=proxy.port)
    try:
        _first_states(consumer)
        plan = ["cut"] * outages + (["blackhole"] if blackhole_s else [])
        for kind in plan:
            getattr(proxy, kind)()
            time.sleep(blackhole_s if kind == "blackhole" else rng.uniform(0.3, 1.5))
            proxy.heal()
            rec = consumer.recovery(state_dir, time.monotonic())
            row.recovery_s.append(rec if rec is not None else WAIT_S)
            time.sleep(rng.uniform(0.2, 0.8))
        row.note = f"blackhole {blackhole_s:.0f} s (keepalive 5 s)" if blackhole_s else ""
        return finish(row, daemon, consumer, state_dir)
    finally:
        proxy.close()


def camera_faults(rig: Rig, rounds: int, rng: random.Random) -> Row:
    """The frames folder turns corrupt (truncated / zero bytes / wrong size), frozen, then vanishes; restored."""
    import cv2
    import numpy as np

    row = Row("camera: corrupt/frozen/gone", events=3 * rounds)
    frames = rig.work / "camera-frames"
    good = sorted((SAMPLES / "frames").glob("*.png"))

    def restore() -> None:
        frames.mkdir(exist_ok=True)
        for p in good:
            (frames / p.name).write_bytes(p.read_bytes())

    restore()
    daemon, consumer, state_dir = _start(rig, "camera", frames=frames)
    _first_states(consumer)
    for _ in range(rounds):
        for phase in ("corrupt", "frozen", "gone"):
            if phase == "corrupt":
                for i, p in enumerate(good):
                    data = p.read_bytes()
                    bad = [data[: len(data) // 3], b"", cv2.imencode(".png", np.zeros((10, 10), np.uint8))[1].tobytes(),
                           bytes(rng.randrange(256) for _ in range(200))][i % 4]
                    (frames / p.name).write_bytes(bad)
            elif phase == "frozen":
                for p in good:
                    (frames / p.name).write_bytes(good[0].read_bytes())
            else:
                for p in frames.iterdir():
                    p.unlink()
                frames.rmdir()
            time.sleep(rng.uniform(0.8, 1.5))
            restore()
            record_recovery(row, daemon, consumer)
    text = daemon.log.read_text(errors="replace")
    row.note = f"{text.count(' skipped: ')} frames skipped"
    return finish(row, daemon, consumer, state_dir)


def write_video(path: Path, repeats: int = 2) -> bool:
    """The sample frames as an MJPG AVI (what an OpenCV source replays); False when OpenCV cannot write one."""
    import cv2

    frames = [cv2.imread(str(p)) for p in sorted((SAMPLES / "frames").glob("*.png"))]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (w, h))
    if not writer.isOpened():
        return False
    for _ in range(repeats):
        for f in frames:
            writer.write(f)
    writer.release()
    return path.stat().st_size > 0


def camera_device_gone(rig: Rig, rounds: int, rng: random.Random) -> Row:
    """An OpenCV source (a video file standing in for /dev/video0) that turns to garbage under the open
    capture and cannot be reopened for a while: read errors, reopen with backoff, recovery."""
    row = Row("camera: device lost/reopened", events=rounds)
    video = rig.work / "camera.avi"
    good = rig.work / "camera-good.avi"
    if not write_video(good):
        row.note = "skipped: OpenCV cannot write an MJPG AVI here"
        return row
    video.write_bytes(good.read_bytes())
    daemon, consumer, state_dir = _start(rig, "camdev", camera={"source": "opencv", "url": str(video),
                                                                 "reopen_min_s": 0.2, "reopen_max_s": 1.0})
    _first_states(consumer)
    for _ in range(rounds):
        with video.open("r+b") as fh:  # the same inode the capture holds: it reads garbage from now on
            fh.write(bytes(rng.randrange(256) for _ in range(4096)) * 64)
            fh.truncate()
        time.sleep(rng.uniform(1.0, 2.0))
        tmp = video.with_suffix(".tmp")
        tmp.write_bytes(good.read_bytes())
        tmp.replace(video)  # the device is back (a new inode, as after a re-plug)
        record_recovery(row, daemon, consumer)
    text = daemon.log.read_text(errors="replace")
    row.note = f"{text.count('reopening in')} read/open failures, {text.count('reopened after')} reopen(s)"
    return finish(row, daemon, consumer, state_dir)


def sigkills(rig: Rig, kills: int, rng: random.Random) -> Row:
    """SIGKILL the daemon at random moments (0.2-2.5 s into each run) and restart it, ``kills`` times."""
    row = Row("SIGKILL + restart", events=kills)
    daemon, consumer, state_dir = _start(rig, "kill")
    config = daemon.proc.args[-1]
    for i in range(kills):
        time.sleep(rng.uniform(0.2, 2.5))
        daemon.kill()
        daemon = DaemonProc(Path(config), daemon.log)
        t_end = time.monotonic()
        rec = consumer.recovery(state_dir, t_end)  # the backlog of the killed run, from the new process
        row.recovery_s.append(rec if rec is not None else WAIT_S)
    last, _ = outbox_seqs(state_dir)
    wait_until(lambda: max(consumer.seen(), default=0) > last, WAIT_S, 0.05)  # the last one runs, then SIGTERM
    return finish(row, daemon, consumer, state_dir)


def clock_jumps(rig: Rig, jumps: int, rng: random.Random) -> Row:
    """Wall-clock jumps of +-1 h (half with the broker down, so rows wait in the outbox across the jump)."""
    row = Row("clock jumps +-1 h", events=jumps)
    daemon, consumer, state_dir = _start(rig, "clock", clock_shim=True, env={"JUMP_S": "3600"})
    _first_states(consumer)
    for i in range(jumps):
        broker_down = i % 2 == 1
        if broker_down:
            rig.broker.stop()
        daemon.proc.send_signal(signal.SIGUSR1 if rng.random() < 0.5 else signal.SIGUSR2)
        time.sleep(rng.uniform(0.3, 1.0))
        if broker_down:
            rig.broker.start()
        rec = consumer.recovery(state_dir, time.monotonic())
        row.recovery_s.append(rec if rec is not None else WAIT_S)
        row.up &= daemon.alive
    return finish(row, daemon, consumer, state_dir)


# -- disk faults ----------------------------------------------------------------------------------------------------

def can_mount() -> bool:
    return os.geteuid() == 0 and Path("/proc/mounts").exists() and bool(shutil_which("mount"))


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full (bounded by its size)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(1 << 16):
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


def disk_faults_mounted(rig: Rig, outages: int, rng: random.Random) -> list[Row]:
    """The state folder on a 4 MiB tmpfs: filled up during the run (disk full) ``outages`` times, half of them
    with the broker stopped so that the outbox must grow into the full disk; and mounted
    read-only when the daemon starts, then made writable (Linux refuses a read-only remount while the outbox
    is open for writing, so a read-only state during the run is the in-process row)."""
    mnt = Path(tempfile.mkdtemp(prefix="edgeocr-state-", dir=rig.work))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True, timeout=10)
    rows = []
    try:
        state_dir = mnt / "full"
        state_dir.mkdir()
        row = Row("disk full (tmpfs)", events=outages)
        daemon, consumer, _ = _start(rig, "disk-full", state_dir=state_dir)
        _first_states(consumer)
        filler = mnt / "filler"
        for i in range(outages):
            broker_down = i % 2 == 0  # sqlite reuses its WAL: only a growing outbox needs new blocks
            if broker_down:
                rig.broker.stop()
            fill(filler)
            time.sleep(rng.uniform(1.0, 2.0))
            filler.unlink()
            if broker_down:
                rig.broker.start()
            rec = consumer.recovery(state_dir, time.monotonic())
            row.recovery_s.append(rec if rec is not None else WAIT_S)
            row.up &= daemon.alive
        text = daemon.log.read_text(errors="replace")
        row.note = (f"outbox failed {text.count('held in memory (not durable')}/{outages} times "
                    "(broker down on half), readings held meanwhile")
        rows.append(finish(row, daemon, consumer, state_dir))

        state_dir = mnt / "ro"
        state_dir.mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=10)
        row = Row("disk read-only at start (tmpfs)", events=1)
        daemon, consumer, _ = _start(rig, "disk-ro", state_dir=state_dir)
        time.sleep(rng.uniform(2.0, 3.0))
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True, timeout=10)
        t_end = time.monotonic()
        row.recovery_s.append(time.monotonic() - t_end if _first_states(consumer, 1) else WAIT_S)
        row.note = "outbox retried every 10 s"
        rows.append(finish(row, daemon, consumer, state_dir))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=10, check=False)
    rows += disk_faults_inprocess(rig, outages, rng, kinds=("read-only",))
    return rows


def disk_faults_inprocess(rig: Rig, outages: int, rng: random.Random, kinds=("full", "read-only")) -> list[Row]:
    """Without root: the same faults through sqlite's own limits on the outbox connection of an in-process
    daemon: ``max_page_count`` (SQLITE_FULL, with the broker stopped so that the queue must grow) and
    ``query_only`` (SQLITE_READONLY)."""
    from device.config import load_config
    from device.daemon import Daemon

    rows = []
    for kind in kinds:
        folder = rig.work / f"disk-{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        config = write_config(folder, rig.broker.port, device=f"disk-{kind}")
        consumer = rig.consumer(f"disk-{kind}")
        state_dir = folder / "state"
        import io

        daemon = Daemon(load_config(config), config, out=io.StringIO())
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        row = Row(f"disk {kind} (sqlite limit)", events=outages)
        _first_states(consumer)
        hits = 0
        for _ in range(outages):
            if kind == "full":
                rig.broker.stop()
            with daemon.outbox._lock:
                db = daemon.outbox._db
                if kind == "full":  # cap the file at its size; with the broker away the queue must grow
                    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
                else:
                    db.execute("PRAGMA query_only = 1")
            time.sleep(rng.uniform(0.5, 1.5))
            hits += wait_until(lambda d=daemon: d._outbox_down_since is not None, 5.0)  # the fault did bite
            with daemon.outbox._lock:
                db.execute("PRAGMA max_page_count = 1073741823" if kind == "full" else "PRAGMA query_only = 0")
            if kind == "full":
                rig.broker.start()
            rec = consumer.recovery(state_dir, time.monotonic())
            row.recovery_s.append(rec if rec is not None else WAIT_S)
            row.up &= thread.is_alive()
        row.note = f"outbox failed {hits}/{outages} times, readings held meanwhile"
        daemon.request_stop()
        thread.join(WAIT_S)
        row.up &= not thread.is_alive()
        last, _ = outbox_seqs(state_dir)
        want = set(range(1, last + 1, 2))
        wait_until(lambda c=consumer, w=want: w <= c.seen(), 10, 0.05)
        consumer.score(last, row)
        rows.append(row)
    return rows


# -- main -------------------------------------------------------------------------------------------------------

FAULTS = ("broker", "netcut", "camera", "disk", "kill", "clock")


def run_all(work: Path, only: tuple[str, ...] = FAULTS, outages: int = 10, long: bool = False,
            seed: int = 1) -> list[Row]:
    rng = random.Random(seed)
    rig = Rig(work)
    rows: list[Row] = []
    try:
        if "broker" in only:
            rows.append(broker_restarts(rig, outages, rng))
        if "netcut" in only:
            rows.append(network_cuts(rig, outages, rng, blackhole_s=20.0 if long else 10.0))
        if "camera" in only:
            rows.append(camera_faults(rig, max(1, outages // 3), rng))
            rows.append(camera_device_gone(rig, outages, rng))
        if "disk" in only:
            rows += disk_faults_mounted(rig, outages, rng) if can_mount() else disk_faults_inprocess(rig, outages, rng)
        if "kill" in only:
            rows.append(sigkills(rig, outages, rng))
        if "clock" in only:
            rows.append(clock_jumps(rig, outages, rng))
    finally:
        rig.close()
    return rows


def print_table(rows: list[Row]) -> None:
    head = ["fault", "events", "readings", "lost", "dup", "recovery_s(max)", "up", "note"]
    cells = [head] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--long", action="store_true", help="30 outages per fault and longer cuts")
    parser.add_argument("--outages", type=int, help="outages per fault (default 10, --long 30)")
    parser.add_argument("--only", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    outages = args.outages or (30 if args.long else 10)
    only = tuple(x for x in args.only.split(",") if x)
    with tempfile.TemporaryDirectory(prefix="edgeocr-faults-") as tmp:
        import logging

        logging.basicConfig(level=logging.INFO, filename=Path(tmp) / "in-process.log")
        t0 = time.monotonic()
        rows = run_all(Path(tmp), only, outages, args.long, args.seed)
        print_table(rows)
        print(f"\n{time.monotonic() - t0:.0f} s; seed {args.seed}")
    bad = [r for r in rows if r.lost or r.dup or not r.up]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
