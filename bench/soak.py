"""Load / soak: the daemon at its maximum frame rate (camera.interval_s = 0) on the replay demo, with the real
model, outbox and MQTT publisher (to a Mosquitto started on a free loopback port), for a sustained run.
Samples the daemon process's RSS and CPU time every ``--sample-s`` and prints, per window: frames/s, RSS and
CPU milliseconds per frame; then RSS at start vs end and CPU per frame in the first vs the last quarter.

    python bench/soak.py                 # 10 minutes
    python bench/soak.py --minutes 30
    python bench/soak.py --seconds 60 --sample-s 5

"Start" is the first sample (after ``--sample-s`` of warm-up: model loaded, caches filled). The run fails
(exit 1) when RSS grew by more than ``--max-growth-mb`` or CPU per frame drifted by more than 25 %.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
DEMO = REPO / "firmware_config" / "replay-demo.toml"


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size from /proc (MB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(seconds: float, sample_s: float, port: int, state_dir: str, threads: int) -> None:
    """In the child: the daemon on the main thread, a sampler thread printing one JSON line per window."""
    from device.config import load_config
    from device.daemon import Daemon

    cfg = load_config(DEMO)
    cfg = replace(cfg, camera=replace(cfg.camera, interval_s=0.0, loop=True),
                  mqtt=replace(cfg.mqtt, enabled=port > 0, port=max(port, 1), commands=False,
                               stats_interval_s=3600.0, reconnect_max_s=2.0),
                  health=replace(cfg.health, state_dir=state_dir, watchdog=False),
                  recognizer=replace(cfg.recognizer, threads=threads))
    daemon = Daemon(cfg, DEMO, out=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process

    def sample() -> None:
        t0 = time.monotonic()
        while not daemon._stop.wait(sample_s):
            cpu = os.times()
            line = {"t": round(time.monotonic() - t0, 1), "frames": daemon.frames_read, "rss_mb": rss_mb(),
                    "cpu_s": cpu.user + cpu.system, "published": daemon.published,
                    "outbox": daemon.outbox.depth() if daemon.outbox is not None else 0,
                    "errors": daemon.frame_errors}
            print("SAMPLE " + json.dumps(line), flush=True)

    threading.Thread(target=sample, daemon=True).start()
    threading.Timer(seconds, daemon.request_stop).start()
    daemon.run()


def run_soak(seconds: float, sample_s: float = 10.0, mqtt: bool = True, threads: int = 1,
             echo: bool = False) -> list[dict]:
    """Run the child for ``seconds``; return its samples (one per ``sample_s``)."""
    with tempfile.TemporaryDirectory(prefix="edgeocr-soak-") as tmp:
        broker = None
        if mqtt:
            from conftest import MOSQUITTO, Broker

            if MOSQUITTO is not None:
                broker = Broker(Path(tmp) / "broker")
                broker.start()
        port = broker.port if broker else 0
        try:
            cmd = [sys.executable, __file__, "--child", "--seconds", str(seconds), "--sample-s", str(sample_s),
                   "--port", str(port), "--state", str(Path(tmp) / "state"), "--threads", str(threads)]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            env.pop("NOTIFY_SOCKET", None)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            samples = []
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("SAMPLE "):
                    samples.append(json.loads(line[7:]))
                    if echo:
                        print_sample(samples)
            proc.wait(60)
        finally:
            if broker:
                broker.stop()
    return samples


def windows(samples: list[dict]) -> list[dict]:
    """Per window between samples: fps and CPU ms per frame."""
    out = []
    for a, b in zip(samples, samples[1:]):  # noqa: RUF007 - itertools.pairwise needs Python 3.10
        frames = b["frames"] - a["frames"]
        out.append({"t": b["t"], "fps": frames / max(1e-9, b["t"] - a["t"]), "rss_mb": b["rss_mb"],
                    "cpu_ms_per_frame": 1000.0 * (b["cpu_s"] - a["cpu_s"]) / max(1, frames)})
    return out


def summary(samples: list[dict]) -> dict:
    """RSS start/end/growth, CPU per frame first vs last quarter, frames, errors."""
    w = windows(samples)
    q = max(1, len(w) // 4)
    first = sum(x["cpu_ms_per_frame"] for x in w[:q]) / q
    last = sum(x["cpu_ms_per_frame"] for x in w[-q:]) / q
    return {"seconds": samples[-1]["t"], "frames": samples[-1]["frames"], "fps": sum(x["fps"] for x in w) / len(w),
            "rss_start_mb": samples[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
            "rss_max_mb": max(s["rss_mb"] for s in samples),
            "rss_growth_mb": samples[-1]["rss_mb"] - samples[0]["rss_mb"],
            "cpu_ms_per_frame_first": first, "cpu_ms_per_frame_last": last,
            "cpu_drift": (last - first) / first if first else 0.0, "frame_errors": samples[-1]["errors"],
            "published": samples[-1]["published"], "outbox_end": samples[-1]["outbox"]}


def print_sample(samples: list[dict]) -> None:
    if len(samples) < 2:
        print(f"{'t_s':>7} {'frames':>8} {'fps':>6} {'rss_mb':>7} {'cpu_ms/frame':>12} {'outbox':>6}", flush=True)
        return
    w = windows(samples[-2:])[0]
    s = samples[-1]
    print(f"{s['t']:7.0f} {s['frames']:8d} {w['fps']:6.1f} {s['rss_mb']:7.1f} {w['cpu_ms_per_frame']:12.2f} "
          f"{s['outbox']:6d}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-mqtt", action="store_true")
    parser.add_argument("--max-growth-mb", type=float, default=5.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds if args.seconds else args.minutes * 60.0
    if args.child:
        child(seconds, args.sample_s, args.port, args.state, args.threads)
        return 0
    samples = run_soak(seconds, args.sample_s, not args.no_mqtt, args.threads, echo=True)
    if len(samples) < 3:
        print("too few samples: run longer than 3 x --sample-s")
        return 1
    s = summary(samples)
    print(f"\nframes {s['frames']} in {s['seconds']:.0f} s ({s['fps']:.1f}/s), published {s['published']}, "
          f"frame errors {s['frame_errors']}, outbox at end {s['outbox_end']}")
    print(f"RSS start {s['rss_start_mb']:.1f} MB, end {s['rss_end_mb']:.1f} MB (growth {s['rss_growth_mb']:+.1f} MB,"
          f" max {s['rss_max_mb']:.1f} MB)")
    print(f"CPU per frame: first quarter {s['cpu_ms_per_frame_first']:.2f} ms, last quarter "
          f"{s['cpu_ms_per_frame_last']:.2f} ms ({100 * s['cpu_drift']:+.0f} %)")
    ok = s["rss_growth_mb"] <= args.max_growth_mb and abs(s["cpu_drift"]) <= 0.25 and not s["frame_errors"]
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
