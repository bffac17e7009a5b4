"""``Type=notify`` + ``WatchdogSec=`` without systemd: the real daemon under a harness that plays systemd.

The harness binds an AF_UNIX datagram socket, starts ``edgeocr run`` as a real subprocess with
``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (its own pid, as systemd sets it), and records each
datagram with its arrival time. The camera is a folder replay in which one "frame" is a FIFO: opening it blocks
until someone writes, exactly like a camera read that never returns, so the frame loop hangs for real.
Like systemd, the harness sends SIGABRT when no WATCHDOG=1 arrived within WATCHDOG_USEC.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FRAMES = REPO / "firmware_config" / "samples" / "frames"
WATCHDOG_USEC = 1_500_000  # 1.5 s: the daemon pings every WATCHDOG_USEC/4 at most, after each frame
WATCHDOG_S = WATCHDOG_USEC / 1e6
BEFORE = 12  # real frames read before the stuck one (~1.2 s at interval_s = 0.1: a few pings)
STUCK_FRAME = f"frame-{BEFORE:03d}.png"


class NotifyListener:
    """systemd's side of sd_notify: a bound datagram socket and the (time, message) pairs received."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def times(self, state: str) -> list[float]:
        """Arrival times of the datagrams that carry ``state`` (e.g. ``WATCHDOG=1``)."""
        with self._lock:
            return [t for t, m in self.messages if state in m.split("\n")]

    def wait_for(self, state: str, count: int, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if len(self.times(state)) >= count:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _frames_with_fifo(folder: Path) -> Path:
    """BEFORE real frames, then a FIFO (the hang), then two more real frames."""
    folder.mkdir()
    samples = sorted(FRAMES.glob("*.png"))
    for i in [*range(BEFORE), BEFORE + 1, BEFORE + 2]:
        shutil.copy(samples[i % len(samples)], folder / f"frame-{i:03d}.png")
    os.mkfifo(folder / STUCK_FRAME)
    return folder


def _config(tmp_path: Path, frames: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
device_id = "harness"
[camera]
source = "folder"
path = "{frames}"
loop = false
width = 480
height = 320
interval_s = 0.1
[[regions]]
name = "energy"
box = [66, 30, 308, 72]
[mqtt]
enabled = false
[health]
state_dir = "{tmp_path / 'state'}"
watchdog = true
""", encoding="utf-8")
    return path


def _start(tmp_path: Path, listener: NotifyListener, config: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC=str(WATCHDOG_USEC), PYTHONPATH=str(REPO))
    # WATCHDOG_PID is the main pid, as systemd sets it: the shell exports its own pid, then execs the daemon.
    cmd = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh",
           sys.executable, "-m", "device.cli", "run", "--config", str(config)]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _max_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _unblock(fifo: Path) -> None:
    """Play the camera that finally answers: write one real PNG into the FIFO."""
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the daemon has it open for reading: no block
    try:
        os.write(fd, min(FRAMES.glob("*.png")).read_bytes())
    finally:
        os.close(fd)


@pytest.fixture
def harness(tmp_path: Path):
    listener = NotifyListener(tmp_path / "notify")
    procs: list[subprocess.Popen] = []
    yield tmp_path, listener, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    listener.close()


def test_ready_then_watchdog_pings_stop_when_the_loop_hangs_and_resume(harness, capsys):
    tmp_path, listener, procs = harness
    frames = _frames_with_fifo(tmp_path / "frames")
    proc = _start(tmp_path, listener, _config(tmp_path, frames))
    procs.append(proc)

    assert listener.wait_for("READY=1", 1, 60), f"no READY=1; daemon said:\n{proc.stdout.read() if proc.poll() is not None else ''}"
    ready_at = listener.times("READY=1")[0]
    # The real frames are read: WATCHDOG=1 after READY=1, never further apart than systemd allows.
    assert listener.wait_for("WATCHDOG=1", 2, 10), "fewer than 2 WATCHDOG=1 while frames were being read"
    assert listener.times("WATCHDOG=1")[0] >= ready_at

    # Then the FIFO: the loop blocks in open(). Wait until systemd's limit has passed with no ping.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - listener.times("WATCHDOG=1")[-1] < WATCHDOG_S * 1.5:
        time.sleep(0.05)
    before = listener.times("WATCHDOG=1")
    last_ping = before[-1]
    silent_s = time.monotonic() - last_ping
    assert proc.poll() is None, "the daemon died instead of hanging"
    assert silent_s > WATCHDOG_S, f"pings went on while the loop was stuck (last one {silent_s:.2f} s ago)"
    assert _max_gap(before) < WATCHDOG_S, f"pings too far apart before the hang: {_max_gap(before):.2f} s"

    # The "camera" answers: the loop advances again and so do the pings; then the replay ends (loop = false).
    _unblock(frames / STUCK_FRAME)
    assert listener.wait_for("WATCHDOG=1", len(before) + 1, 10), "pings did not resume after the loop moved on"
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert listener.times("STOPPING=1"), "no STOPPING=1 at the end"
    statuses = [m for _, m in listener.messages if m.startswith("STATUS=")]
    with capsys.disabled():
        print(f"\n[notify] READY=1 after start, {len(listener.times('WATCHDOG=1'))} WATCHDOG=1 pings, "
              f"max gap before the hang {_max_gap(before):.2f} s (limit {WATCHDOG_S:.1f} s), "
              f"silence while hung {silent_s:.2f} s, STATUS={statuses[0][7:] if statuses else '-'}")


def test_hung_loop_is_killed_like_systemd_does(harness, capsys):
    """No pings for WATCHDOG_USEC -> SIGABRT (systemd's WatchdogSignal); the process must then be gone."""
    tmp_path, listener, procs = harness
    frames = _frames_with_fifo(tmp_path / "frames")
    proc = _start(tmp_path, listener, _config(tmp_path, frames))
    procs.append(proc)
    assert listener.wait_for("READY=1", 1, 60), "no READY=1"
    assert listener.wait_for("WATCHDOG=1", 1, 10), "no WATCHDOG=1"

    deadline = time.monotonic() + 30
    fired_after = None
    while time.monotonic() < deadline and proc.poll() is None:
        last = max(listener.times("WATCHDOG=1"))
        if time.monotonic() - last > WATCHDOG_S:  # systemd: "Watchdog timeout (limit 1.5s)!"
            fired_after = time.monotonic() - last
            proc.send_signal(signal.SIGABRT)
            break
        time.sleep(0.05)
    assert fired_after is not None, "the watchdog never fired: pings continued though the loop was stuck"
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGABRT  # Restart=on-failure restarts on this ("watchdog" result)
    assert not listener.times("STOPPING=1")
    with capsys.disabled():
        print(f"\n[notify] watchdog fired {fired_after:.2f} s after the last ping; daemon ended by SIGABRT")
