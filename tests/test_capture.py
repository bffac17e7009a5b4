"""Capture: folder replay, OpenCV on a video file, frame checks (corrupt/empty/odd-size skipped), reopen backoff."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_helpers import panel_frame

from device.capture import (
    Capture,
    CaptureError,
    FolderSource,
    FrameSource,
    OpenCVSource,
    check_frame,
    open_source,
    picamera_controls,
)
from device.config import CameraConfig
from device.errors import ImageError

CAM = CameraConfig(source="folder", width=160, height=120, reopen_min_s=1.0, reopen_max_s=4.0)


def write_frames(folder: Path, count: int) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = [panel_frame(value=f"{i:03d}") for i in range(count)]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), frame)
    return frames


def test_folder_replays_in_order_and_loops(tmp_path: Path):
    frames = write_frames(tmp_path / "frames", 3)
    (tmp_path / "frames" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    cap = Capture(CAM, FolderSource(tmp_path / "frames", loop=True))
    got = [cap.read(0.0) for _ in range(5)]
    assert [f.name for f in got] == ["f00.png", "f01.png", "f02.png", "f00.png", "f01.png"]
    assert np.array_equal(got[1].image, frames[1]) and got[4].index == 5


def test_folder_without_loop_ends(tmp_path: Path):
    write_frames(tmp_path / "frames", 2)
    cap = Capture(CAM, FolderSource(tmp_path / "frames", loop=False))
    assert cap.read(0.0) is not None and cap.read(0.0) is not None
    assert cap.read(0.0) is None and cap.exhausted


def test_bad_frames_are_skipped_and_counted(tmp_path: Path, caplog):
    folder = tmp_path / "frames"
    write_frames(folder, 2)
    (folder / "f00a.png").write_bytes(b"")  # empty
    (folder / "f00b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    cv2.imwrite(str(folder / "f00c.png"), np.zeros((50, 70), np.uint8))  # odd size
    cap = Capture(CAM, FolderSource(folder, loop=False))
    good = [f for f in (cap.read(0.0) for _ in range(6)) if f is not None]
    assert [f.name for f in good] == ["f00.png", "f01.png"]
    assert cap.bad_frames == 3 and cap.frames == 2 and cap.exhausted
    assert "f00a.png skipped: " in caplog.text and "empty file" in caplog.text
    assert "f00b.png skipped: " in caplog.text and "not a decodable image" in caplog.text
    assert "f00c.png skipped: frame of 70x50: expected 160x120" in caplog.text and "(3 bad frames so far)" in caplog.text


class FlakySource(FrameSource):
    """Fails to open once, then delivers, then its reads fail twice, then it works again."""

    name = "flaky"

    def __init__(self, script: list[str]):
        self.script, self.opens, self.closes = script, 0, 0

    def _next(self) -> str:
        return self.script.pop(0) if self.script else "ok"

    def open(self) -> None:
        self.opens += 1
        if self._next() == "fail":
            raise CaptureError("camera unplugged")

    def read(self) -> np.ndarray:
        if self._next() == "fail":
            raise CaptureError("read timed out")
        return panel_frame()

    def close(self) -> None:
        self.closes += 1


def test_failing_camera_is_reopened_with_backoff(caplog):
    caplog.set_level(logging.INFO)
    src = FlakySource(["fail", "ok", "ok", "fail", "ok", "fail", "ok", "ok"])
    cap = Capture(CAM, src)
    assert cap.read(0.0) is None and cap.retry_in_s(0.0) == 1.0  # open failed: retry in 1 s
    assert cap.read(0.5) is None and src.opens == 1  # too early: no attempt
    assert cap.read(1.0) is not None and cap.healthy  # reopened, frame delivered
    assert cap.read(2.0) is None and cap.retry_in_s(2.0) == 1.0  # read failed: closed, retry in 1 s
    assert cap.read(3.0) is None and cap.retry_in_s(3.0) == 2.0  # reopened, read failed again: backoff doubles
    assert cap.read(5.0) is not None and cap.failures == 3 and src.closes == 3  # closed after every failure
    assert "reopening in 2.0 s (failure 2)" in caplog.text and "reopened after 2 failure(s)" in caplog.text


def test_backoff_is_capped():
    src = FlakySource(["fail"] * 10)
    cap = Capture(CAM, src)
    delays = []
    now = 0.0
    for _ in range(5):
        cap.read(now)
        delays.append(cap.retry_in_s(now))
        now += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(
    ("image", "message"),
    [(None, "empty frame"), (np.zeros((0, 0), np.uint8), "empty frame"),
     (np.zeros((120, 160, 2), np.uint8), "expected gray or BGR"), (np.zeros((121, 160), np.uint8), "expected 160x120")],
)
def test_check_frame_rejects(image, message):
    with pytest.raises(ImageError, match=message):
        check_frame(image, 160, 120)


def test_check_frame_converts_16_bit():
    out = check_frame(np.full((120, 160), 65535, np.uint16), 160, 120)
    assert out.dtype == np.uint8 and out.max() == 255


def test_opencv_source_reads_a_video_file_and_loops(tmp_path: Path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(3):
        writer.write(cv2.cvtColor(panel_frame(value=f"{i}00"), cv2.COLOR_GRAY2BGR))
    writer.release()
    cfg = CameraConfig(source="opencv", url=str(path), width=160, height=120, loop=True)
    src = open_source(cfg)
    assert isinstance(src, OpenCVSource) and src.is_file
    cap = Capture(cfg, src)
    frames = [cap.read(0.0) for _ in range(5)]
    assert all(f is not None and f.image.shape == (120, 160, 3) for f in frames)
    cap.close()


def test_opencv_source_that_cannot_open_is_a_capture_failure(tmp_path: Path):
    cfg = CameraConfig(source="opencv", url=str(tmp_path / "missing.avi"), width=160, height=120)
    cap = Capture(cfg)
    assert cap.read(0.0) is None and cap.failures == 1 and "cannot open" in cap.last_error


def test_picamera_controls_only_where_the_camera_has_them():
    cfg = CameraConfig(exposure_us=8000, analogue_gain=2.0, lens_position=3.0)
    full = {"ExposureTime", "AnalogueGain", "AfMode", "LensPosition"}
    assert picamera_controls(cfg, full) == {"AeEnable": False, "ExposureTime": 8000, "AnalogueGain": 2.0,
                                            "AfMode": 0, "LensPosition": 3.0}
    assert picamera_controls(cfg, {"ExposureTime"}) == {"AeEnable": False, "ExposureTime": 8000}  # fixed focus
    assert picamera_controls(CameraConfig(), full) == {"AfMode": 2}  # auto exposure, continuous AF


def test_missing_picamera2_is_a_capture_error_not_a_crash():
    cap = Capture(CameraConfig(source="picamera2", width=160, height=120))
    try:
        import picamera2  # noqa: F401
    except ImportError:
        assert cap.read(0.0) is None and "picamera2" in cap.last_error
    else:
        pytest.skip("picamera2 is installed here")
