"""Load, CI-sized: the daemon at its maximum frame rate with the real model, outbox and MQTT for ~25 s
(``bench/soak.py`` runs the same for 10+ minutes). Memory must not grow, CPU per frame must stay level,
no frame may fail, and the outbox must keep up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import soak

pytestmark = pytest.mark.skipif(not (REPO / "models" / "edgeocr-crnn.tflite").is_file() or
                                not Path("/proc/self/status").exists(),
                                reason="needs the shipped model and /proc (Linux) for RSS")


def test_max_rate_memory_and_cpu_per_frame_stay_level():
    samples = soak.run_soak(seconds=26.0, sample_s=3.0, mqtt=True)
    assert len(samples) >= 6, samples
    s = soak.summary(samples[1:])  # the first window is warm-up (model, caches, sqlite pages)
    print(s)
    assert s["frames"] > 100 and s["frame_errors"] == 0, s
    assert s["rss_growth_mb"] <= 4.0, f"RSS grew {s['rss_growth_mb']:.1f} MB at max frame rate: {s}"
    assert abs(s["cpu_drift"]) <= 0.5, f"CPU per frame drifted {100 * s['cpu_drift']:+.0f} %: {s}"
    assert s["outbox_end"] <= 64, "the publisher did not keep up with the outbox at max frame rate"


def test_small_fleet_loses_nothing():
    """10 daemons (2 processes) against one broker for a few seconds: every stored reading arrives."""
    import fleet

    r = fleet.run_fleet(instances=10, seconds=6.0, per_process=5, interval_s=0.5)
    print(r)
    assert r["instances"] == 10 and r["readings"] >= 10 * 2 * 8, r
    assert r["lost"] == 0 and r["frame_errors"] == 0 and r["left_in_outboxes"] == 0, r
    assert r["latency_ms"]["p99"] < 2000, r
