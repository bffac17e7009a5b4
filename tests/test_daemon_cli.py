"""The daemon loop (fake reader, real files, real state file) and the CLI exit codes (real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_helpers import REPO, SHIPPED_MODEL, ScriptedReader, fake_model, panel_frame, write_config

from device.config import load_config
from device.daemon import Daemon

CONFIG = """
device_id = "bench-1"
[camera]
source = "folder"
path = "frames"
loop = {loop}
width = 160
height = 120
interval_s = {interval}
[recognizer]
model = "{model}"
[tracker]
vote_k = 2
vote_n = 3
[[regions]]
name = "meter"
box = [10, 20, 100, 40]
unit = "kWh"
decimals = 1
[mqtt]
enabled = false
[health]
state_dir = "state"
persist_interval_s = 0
"""


def make_setup(tmp_path: Path, frames: int = 6, loop: bool = False, interval: float = 0.0) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    for i in range(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), panel_frame())
    body = CONFIG.replace("{loop}", str(loop).lower()).replace("{interval}", str(interval))
    return write_config(tmp_path / "config.toml", body, fake_model(tmp_path))


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass


class RecordingNotifier:
    watchdog_interval_s = 0.0001

    def __init__(self):
        self.calls: list[str] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append(name)


def test_daemon_reads_prints_persists_and_skips_bad_frames(tmp_path: Path, caplog):
    path = make_setup(tmp_path, frames=5)
    (tmp_path / "frames" / "f001a.png").write_bytes(b"")  # empty
    (tmp_path / "frames" / "f002a.png").write_bytes(b"garbage")  # corrupt
    cv2.imwrite(str(tmp_path / "frames" / "f003a.png"), np.zeros((10, 10), np.uint8))  # odd size
    out, notifier = Lines(), RecordingNotifier()
    reader = ScriptedReader([("012345", 0.95)])
    daemon = Daemon(load_config(path), path, recognizer=reader, out=out, notifier=notifier)
    assert daemon.run() == 0  # the replay ends
    assert out.lines == ["meter: 1234.5 kWh [ok] raw='012345' conf=0.95"]
    assert daemon.capture.frames == 5 and daemon.capture.bad_frames == 3
    assert "(3 bad frames so far)" in caplog.text
    saved = json.loads((tmp_path / "state" / "last-values-bench-1.json").read_text())
    assert saved["regions"]["meter"]["value"] == "1234.5"
    assert notifier.calls[0] == "ready" and "watchdog" in notifier.calls and "stopping" in notifier.calls
    assert reader.shapes[0] == (40, 100)


def test_a_frame_that_breaks_a_stage_is_skipped(tmp_path: Path, caplog):
    path = make_setup(tmp_path, frames=4)

    class Breaks(ScriptedReader):
        def read(self, crop, allowed=None):
            if self.calls == 1:
                self.calls += 1
                raise RuntimeError("interpreter hiccup")
            return super().read(crop, allowed)

    daemon = Daemon(load_config(path), path, recognizer=Breaks([("012345", 0.9)]), out=Lines(),
                    notifier=RecordingNotifier())
    assert daemon.run() == 0
    assert daemon.frame_errors == 1 and daemon.frames_read == 4 and "interpreter hiccup" in caplog.text


def test_max_frames_and_history_across_restarts(tmp_path: Path):
    path = make_setup(tmp_path, frames=3, loop=True)
    cfg = load_config(path)
    first = Daemon(cfg, path, recognizer=ScriptedReader([("012345", 0.9)]), out=Lines(), notifier=RecordingNotifier())
    assert first.run(max_frames=4) == 0 and first.capture.frames == 4
    out = Lines()
    second = Daemon(cfg, path, recognizer=ScriptedReader([("000100", 0.9)]), out=out, notifier=RecordingNotifier())
    second.run(max_frames=4)
    assert out.lines == ["meter: 1234.5 kWh [implausible] raw='000100' conf=0.90"]  # remembered, not decreased


def test_commands_set_reread_snapshot(tmp_path: Path):
    path = make_setup(tmp_path, frames=3, loop=True)
    out = Lines()
    daemon = Daemon(load_config(path), path, recognizer=ScriptedReader([("012345", 0.9)]), out=out,
                    notifier=RecordingNotifier())
    daemon.run(max_frames=2)
    daemon.command("set/meter", b"2000.5")
    daemon.command("edgeocr/bench-1/cmd/snapshot", b"")
    daemon.command("bogus", b"")
    assert daemon._handle_commands() is False
    assert out.lines[-1].startswith("meter: 2000.5 kWh [ok]")
    assert cv2.imread(str(tmp_path / "state" / "snapshot.png")).shape == (240, 320, 3)  # small frames drawn at 2x
    daemon.command("reread", b"")
    assert daemon._handle_commands() is True


def test_reload_applies_a_valid_config_and_keeps_the_old_one_otherwise(tmp_path: Path, caplog):
    path = make_setup(tmp_path)
    daemon = Daemon(load_config(path), path, recognizer=ScriptedReader([("1", 0.9)]), out=Lines(),
                    notifier=RecordingNotifier())
    path.write_text(path.read_text().replace('name = "meter"', 'name = "power"'))
    daemon.reload()
    assert list(daemon.trackers) == ["power"]
    path.write_text(path.read_text().replace("width = 160", "width = 'x'"))
    daemon.reload()
    assert list(daemon.trackers) == ["power"] and "reload refused" in caplog.text and "camera.width = 'x'" in caplog.text
    daemon.close()


def cli(*args: str, env: dict | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "device.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)


def test_check_config_ok_and_errors(tmp_path: Path):
    path = make_setup(tmp_path)
    ok = cli("check-config", str(path))
    assert ok.returncode == 0 and ok.stdout.startswith(f"OK {path}") and "region   meter: meter box vote 2/3" in ok.stdout
    bad = write_config(tmp_path / "bad.toml", path.read_text().replace("box = [10, 20, 100, 40]", "box = [100, 100, 100, 40]")
                       .replace("[mqtt]\nenabled = false", "[mqtt]\nport = 'abc'\nretries = 3"))
    result = cli("check-config", str(bad))
    assert result.returncode == 78 and result.stdout == ""
    errors = result.stderr.strip().splitlines()
    assert (f"edgeocr: config error: {bad}: regions.meter.box = [100, 100, 100, 40]: "
            "expected a region inside the 160x120 frame (camera.width x camera.height)") in errors
    assert f"edgeocr: config error: {bad}: mqtt.port = 'abc': expected an integer 1-65535" in errors
    assert any("mqtt.retries: unknown key" in e for e in errors)
    broken = tmp_path / "broken.toml"
    broken.write_text("device_id = \n")
    result = cli("check-config", str(broken))
    assert result.returncode == 78 and "invalid TOML" in result.stderr


def test_run_with_a_bad_config_exits_78(tmp_path: Path):
    path = make_setup(tmp_path)
    bad = write_config(tmp_path / "bad.toml", path.read_text().replace("vote_n = 3", "vote_n = 1"))
    result = cli("run", "--config", str(bad), "--max-frames", "1")
    assert result.returncode == 78 and "tracker.vote_k = 2: expected <= tracker.vote_n (1)" in result.stderr


SIGNAL_SCRIPT = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    sys.path.insert(0, {tests!r})
    from daemon_helpers import ScriptedReader
    from device.config import load_config
    from device.daemon import Daemon
    path = {path!r}
    daemon = Daemon(load_config(path), path, recognizer=ScriptedReader([("012345", 0.9)]))
    daemon.install_signals()
    sys.exit(daemon.run())
""")


def test_sigterm_finishes_the_frame_flushes_and_exits_0_and_sighup_reloads(tmp_path: Path):
    path = make_setup(tmp_path, frames=3, loop=True, interval=0.02)
    script = SIGNAL_SCRIPT.format(tests=str(REPO / "tests"), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    try:
        first = proc.stdout.readline()
        assert first.startswith("meter: 1234.5 kWh [ok]")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert rc == 0, stderr
    assert "reloading" in stderr and "stopped after" in stderr
    assert json.loads((tmp_path / "state" / "last-values-bench-1.json").read_text())["regions"]["meter"]["value"] == "1234.5"


# -- with the shipped model ---------------------------------------------------------------------------------
needs_model = pytest.mark.skipif(not SHIPPED_MODEL.is_file(),
                                 reason=f"{SHIPPED_MODEL} is absent: end-to-end tests need the shipped model")


def demo_copy(tmp_path: Path, **mqtt) -> Path:
    """The replay demo with its samples, MQTT off, no loop; state in tmp."""
    shutil.copytree(REPO / "firmware_config" / "samples", tmp_path / "samples",
                    ignore=shutil.ignore_patterns("*.py"))
    text = (REPO / "firmware_config" / "replay-demo.toml").read_text()
    text = text.replace("loop = true", "loop = false").replace("interval_s = 0.2", "interval_s = 0")
    text = text.replace("[mqtt]\nenabled = true", "[mqtt]\nenabled = false")
    return write_config(tmp_path / "demo.toml", text)


@needs_model
def test_end_to_end_replay_demo_with_the_shipped_model(tmp_path: Path):
    path = demo_copy(tmp_path)
    result = cli("run", "--config", str(path), env={"STATE_DIRECTORY": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    regions = {line.split(":", 1)[0] for line in lines}
    assert regions == {"energy", "water", "temperature", "label"}, result.stdout
    assert any(line.startswith("energy: 1234.5 kWh [ok]") for line in lines), result.stdout
    assert any(line.startswith("label: PN AB-1234 | LOT 5678 [ok]") and "lot=5678" in line for line in lines), result.stdout


@needs_model
def test_default_run_is_the_bundled_demo_and_preview_draws_it(tmp_path: Path):
    env = {"STATE_DIRECTORY": str(tmp_path / "state")}
    result = cli("run", "--once", env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4  # one reading per region, accepted at once
    out = tmp_path / "preview.png"
    result = cli("preview", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(out)).shape == (640, 960, 3)  # the 480x320 demo frame at 2x


@needs_model
def test_preview_of_an_odd_size_image_is_an_error(tmp_path: Path):
    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), np.zeros((10, 10), np.uint8))
    result = cli("preview", "--image", str(odd), "--out", str(tmp_path / "p.png"))
    assert result.returncode == 1 and "expected 480x320" in result.stderr


def test_reload_keeps_the_mqtt_connection_unless_its_settings_change(tmp_path: Path):
    path = make_setup(tmp_path)
    path.write_text(path.read_text().replace("[mqtt]\nenabled = false", "[mqtt]\nport = 1\nreconnect_min_s = 5"))
    daemon = Daemon(load_config(path), path, recognizer=ScriptedReader([("1", 0.9)]), out=Lines(),
                    notifier=RecordingNotifier())
    publisher = daemon.publisher
    assert publisher is not None
    path.write_text(path.read_text().replace("vote_n = 3", "vote_n = 4"))
    daemon.reload()
    assert daemon.publisher is publisher and daemon.trackers["meter"].region.tracker.vote_n == 4
    path.write_text(path.read_text().replace("port = 1", "port = 2"))
    daemon.reload()
    assert daemon.publisher is not publisher and daemon.publisher.cfg.port == 2
    daemon.close()
