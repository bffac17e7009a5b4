"""Daemon benchmark: frames/s with the replay demo's 4 regions on one core, time per stage, peak RSS of the
daemon process, and time from start to the first published reading. Prints a table.

    python bench/daemon.py [--frames 300] [--config firmware_config/replay-demo.toml] [--no-mqtt]

The daemon runs in a child process pinned to one core (interpreter threads = 1). Unless ``--no-mqtt``,
readings go through the real outbox and publisher to a Mosquitto started on a free port (when
/usr/sbin/mosquitto exists; otherwise to a closed port, so the outbox still takes every write).
Goals: >= 30 frames/s, RSS < 100 MB, first reading < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("capture", "align", "crop", "preprocess", "recognize", "publish")
GOALS = {"fps": 30.0, "rss_mb": 100.0, "first_reading_s": 2.0}


def child(config: str, frames: int, mqtt_port: int, state_dir: str) -> None:
    """In the pinned child: build the daemon from the config and run it for ``frames`` frames."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    sys.path.insert(0, str(REPO))
    from device.config import load_config
    from device.daemon import Daemon

    cfg = load_config(config)
    camera = replace(cfg.camera, interval_s=0.0, loop=True)
    mqtt = replace(cfg.mqtt, enabled=mqtt_port > 0, port=max(mqtt_port, 1), commands=False, stats_interval_s=3600.0)
    health = replace(cfg.health, state_dir=state_dir, watchdog=False)
    cfg = replace(cfg, camera=camera, mqtt=mqtt, health=health, recognizer=replace(cfg.recognizer, threads=1))
    daemon = Daemon(cfg, config)
    loop_start = time.monotonic()
    daemon.run(max_frames=frames)
    elapsed = time.monotonic() - loop_start
    result = {
        "frames": daemon.frames_read, "elapsed_s": elapsed, "published": daemon.published,
        "stages_ms": {s: daemon.times.mean_ms(s) for s in STAGES},
        "stage_total_s": {s: daemon.times.total_s.get(s, 0.0) for s in STAGES},
        "regions": len(cfg.regions), "first_publish_s": daemon.first_publish_s,
        "backend": getattr(daemon.recognizer, "backend", "?"),
    }
    print("BENCH " + json.dumps(result), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_broker(folder: Path) -> tuple[subprocess.Popen | None, int]:
    """A throwaway Mosquitto on a free port, or (None, closed port)."""
    port = free_port()
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        return None, port
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "firmware_config" / "replay-demo.toml"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--no-mqtt", action="store_true", help="readings are only printed")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "FRAMES", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.state_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="edgeocr-bench-") as tmp:
        broker, port = (None, 0) if args.no_mqtt else start_broker(Path(tmp))
        cmd = [sys.executable, __file__, "--child", args.config, str(args.frames), str(port), "--state-dir", tmp]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        first_line_s, result = None, None
        for line in proc.stdout:
            if line.startswith("BENCH "):
                result = json.loads(line[6:])
            elif first_line_s is None:
                first_line_s = time.monotonic() - t0
        proc.wait()
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # Linux: KiB
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        if result is None or proc.returncode != 0:
            print(proc.stderr.read(), file=sys.stderr)
            return 1
    fps = result["frames"] / result["elapsed_s"]
    publish = f"MQTT (Mosquitto :{port})" if broker is not None else ("outbox, no broker" if port else "stdout only")
    print(f"edgeocr daemon benchmark: {result['frames']} frames, {result['regions']} regions, 1 core, "
          f"{result['backend']}, publish: {publish}")
    print(f"{'stage':<22}{'ms/frame':>10}")
    for stage in STAGES:
        per_frame = 1000.0 * result["stage_total_s"][stage] / max(1, result["frames"])
        print(f"{stage:<22}{per_frame:>10.2f}")
    print(f"{'loop (wall)':<22}{1000.0 / fps:>10.2f}")
    rows = [("frames/s", fps, "fps", ">="), ("peak RSS (MB)", rss_mb, "rss_mb", "<"),
            ("first reading (s)", first_line_s or float("inf"), "first_reading_s", "<")]
    print(f"\n{'metric':<22}{'value':>10}{'goal':>10}  ok")
    for name, value, key, op in rows:
        ok = value >= GOALS[key] if op == ">=" else value < GOALS[key]
        print(f"{name:<22}{value:>10.2f}{op + format(GOALS[key], 'g'):>10}  {'yes' if ok else 'NO'}")
    print(f"({result['published']} readings published; first reading {result['first_publish_s']:.2f} s after "
          f"the daemon object was built)" if result["first_publish_s"] is not None else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
