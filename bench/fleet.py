"""Fleet simulation: N daemon instances (default 100; replay sources, unique device ids, each with its own
outbox and MQTT connection) against one local Mosquitto on 127.0.0.1, each publishing at its normal rate
(one frame per ``--interval-s``, default 1 s) for a bounded time. Prints lost readings, broker CPU and RSS,
and end-to-end latency percentiles (frame time -> arrival at a subscriber).

    python bench/fleet.py                       # 100 instances, 60 s
    python bench/fleet.py --instances 20 --seconds 20
    python bench/fleet.py --real-model          # the INT8 model in every instance (about 25 ms CPU/frame each)

Instances run ``--per-process`` to a process (default 10, each on its own threads), so 100 instances fit in
2 cores and a few hundred MB. By default each instance reads its regions with a stub recognizer that returns
a rising counter, so every frame gives a new reading (vote 1/1): the load is the transport (capture, tracker,
sqlite outbox with fsync, MQTT QoS 1), which is what the broker sees; ``bench/soak.py`` measures the model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
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


class CounterReader:
    """Stub recognizer: a rising number per call (so each frame is a new, plausible reading)."""

    def __init__(self, start: int) -> None:
        self.n = start

    def read(self, crop, allowed=None):
        from device.ctc import Read

        self.n += 1
        text = f"{self.n:06d}"
        return Read(text, 0.99, (0.99,) * len(text))


def instance_config(device: str, port: int, state_root: Path, interval_s: float):
    """The replay demo as device ``device``: two meter regions accepted on every read, no alignment."""
    from device.config import AlignConfig, TrackerConfig, load_config

    cfg = load_config(DEMO)
    tracker = TrackerConfig(vote_k=1, vote_n=1, heartbeat_s=300.0)
    regions = tuple(replace(r, tracker=tracker, pattern="", decimals=0, chars="0123456789")
                    for r in cfg.regions if r.kind == "meter")[:2]
    return replace(cfg, device_id=device, regions=regions, align=AlignConfig(),
                   camera=replace(cfg.camera, interval_s=interval_s, loop=True),
                   mqtt=replace(cfg.mqtt, port=port, commands=False, stats_interval_s=30.0, reconnect_min_s=0.5,
                                reconnect_max_s=5.0),
                   outbox=replace(cfg.outbox, path="outbox.sqlite"),
                   health=replace(cfg.health, state_dir=str(state_root / device), watchdog=False))


def child(first: int, count: int, seconds: float, port: int, state_root: str, interval_s: float,
          real_model: bool) -> None:
    """In a child process: ``count`` daemons on threads, started with jitter, stopped after ``seconds``."""
    from device.daemon import Daemon

    rng = random.Random(first)
    daemons = []
    shared_model = None
    if real_model:
        from device.recognize import Recognizer

        shared_model = Recognizer(None, num_threads=1)
    for i in range(first, first + count):
        cfg = instance_config(f"fleet-{i:04d}", port, Path(state_root), interval_s)
        reader = shared_model if real_model else CounterReader(i * 1000)
        daemons.append(Daemon(cfg, None, recognizer=reader, out=open(os.devnull, "w")))  # noqa: SIM115
    threads = []
    for d in daemons:
        t = threading.Thread(target=d.run, daemon=True)
        t.start()
        threads.append(t)
        time.sleep(rng.uniform(0, interval_s / count))  # spread the frames over the interval
    time.sleep(seconds)
    for d in daemons:
        d.request_stop()
    for t in threads:
        t.join(30)
    for d in daemons:
        last, left = outbox_state(Path(d.state_dir) / "outbox.sqlite")
        print("DEVICE " + json.dumps({"device": d.cfg.device_id, "last_seq": last, "left": left,
                                      "published": d.published, "errors": d.frame_errors}), flush=True)


def outbox_state(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    return (row[0] if row else 0), int(left)


class Subscriber:
    """Every state of every device: seq and arrival latency (arrival wall time - frame ts)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.seqs: dict[str, list[int]] = {}
        self.latency_s: list[float] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-sub-{os.getpid()}")
        self.client.max_queued_messages_set(0)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("edgeocr/+/+/state", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        now = time.time()
        state = json.loads(msg.payload)
        device = msg.topic.split("/")[1]
        with self._lock:
            self.seqs.setdefault(device, []).append(state["seq"])
            if not msg.retain:
                self.latency_s.append(now - state["ts"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class BrokerMonitor:
    """Broker process CPU (% of one core) and RSS, sampled once a second."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss_mb, self._stop = pid, [], threading.Event()
        self.t0, self.cpu0 = time.monotonic(), self._cpu_s()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu_s(self) -> float:
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        from soak import rss_mb

        while not self._stop.wait(1.0):
            self.rss_mb.append(rss_mb(self.pid))

    def stop(self) -> dict:
        self._stop.set()
        wall = time.monotonic() - self.t0
        cpu = self._cpu_s() - self.cpu0
        return {"broker_cpu_pct": 100.0 * cpu / wall, "broker_cpu_s": cpu,
                "broker_rss_max_mb": max(self.rss_mb, default=float("nan")),
                "broker_rss_end_mb": self.rss_mb[-1] if self.rss_mb else float("nan")}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100.0 * (len(s) - 1)))]


def run_fleet(instances: int, seconds: float, per_process: int = 10, interval_s: float = 1.0,
              real_model: bool = False) -> dict:
    """Start the broker, the subscriber and the instances; return the numbers."""
    from conftest import Broker

    with tempfile.TemporaryDirectory(prefix="edgeocr-fleet-") as tmp:
        broker = Broker(Path(tmp) / "broker")
        broker.start()
        sub = Subscriber(broker.port)
        assert broker.proc is not None
        monitor = BrokerMonitor(broker.proc.pid)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        procs = []
        t0 = time.monotonic()
        try:
            for first in range(0, instances, per_process):
                cmd = [sys.executable, __file__, "--child", "--first", str(first),
                       "--count", str(min(per_process, instances - first)), "--seconds", str(seconds),
                       "--port", str(broker.port), "--state-root", str(Path(tmp) / "state"),
                       "--interval-s", str(interval_s), *(["--real-model"] if real_model else [])]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                              env=env))
            devices = []
            for p in procs:
                out, _ = p.communicate(timeout=seconds + 120)
                devices += [json.loads(line[7:]) for line in out.splitlines() if line.startswith("DEVICE ")]
            elapsed = time.monotonic() - t0
            expected = {d["device"]: set(range(1, d["last_seq"] + 1, 2)) for d in devices}
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(expected[k] - set(sub.seqs.get(k, [])) for k in expected):
                time.sleep(0.1)
            broker_stats = monitor.stop()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            sub.close()
            broker.stop()
    lost = sum(len(expected[k] - set(sub.seqs.get(k, []))) for k in expected)
    received = sum(len(set(v)) for v in sub.seqs.values())
    dups = sum(len(v) - len(set(v)) for v in sub.seqs.values())
    lat_ms = [1000.0 * x for x in sub.latency_s]
    return {"instances": len(devices), "seconds": seconds, "elapsed_s": elapsed,
            "readings": sum(len(v) for v in expected.values()), "received": received, "lost": lost,
            "redelivered": dups, "left_in_outboxes": sum(d["left"] for d in devices),
            "frame_errors": sum(d["errors"] for d in devices),
            "msgs_per_s": 2 * received / max(1e-9, seconds),
            "latency_ms": {f"p{q}": percentile(lat_ms, q) for q in (50, 95, 99)} | {"max": max(lat_ms, default=0)},
            **broker_stats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--per-process", type=int, default=10)
    parser.add_argument("--interval-s", type=float, default=1.0, help="each instance's frame interval")
    parser.add_argument("--real-model", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--state-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.first, args.count, args.seconds, args.port, args.state_root, args.interval_s, args.real_model)
        return 0
    r = run_fleet(args.instances, args.seconds, args.per_process, args.interval_s, args.real_model)
    lat = r["latency_ms"]
    print(f"instances            {r['instances']} ({args.per_process} per process), {r['seconds']:.0f} s "
          f"at one frame per {args.interval_s:g} s, {'INT8 model' if args.real_model else 'stub recognizer'}")
    print(f"readings stored      {r['readings']}  (state + value = {2 * r['readings']} messages, "
          f"{r['msgs_per_s']:.0f} msg/s)")
    print(f"readings received    {r['received']}  lost {r['lost']}  redelivered {r['redelivered']}  "
          f"left in outboxes {r['left_in_outboxes']}  frame errors {r['frame_errors']}")
    print(f"latency frame->sub   p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms  p99 {lat['p99']:.1f} ms  "
          f"max {lat['max']:.1f} ms")
    print(f"broker               CPU {r['broker_cpu_pct']:.1f} % of one core ({r['broker_cpu_s']:.1f} s), "
          f"RSS max {r['broker_rss_max_mb']:.1f} MB, end {r['broker_rss_end_mb']:.1f} MB")
    return 0 if r["lost"] == 0 and r["instances"] == args.instances else 1


if __name__ == "__main__":
    sys.exit(main())
