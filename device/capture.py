"""Frame sources: one ``FrameSource`` interface; picamera2, OpenCV (index, URL, video file) and folder replay.

``Capture`` wraps a source for the daemon: it checks every frame (corrupt, empty and odd-size frames are
skipped and counted), and reopens a failing camera with exponential backoff instead of dying.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.config import CameraConfig
from device.errors import EdgeOCRError, ImageError

logger = logging.getLogger(__name__)


class CaptureError(EdgeOCRError):
    """The camera or stream failed (open or read); the source should be closed and reopened."""


class EndOfStream(EdgeOCRError):
    """A finite source (folder or video file without ``loop``) has no more frames."""


@dataclass(frozen=True)
class Frame:
    """One checked frame: running index, wall-clock capture time, the image (gray or BGR uint8), its origin."""

    index: int
    t_s: float
    image: np.ndarray
    name: str = ""


class FrameSource(ABC):
    """A camera or a replay. ``read`` returns one image or raises CaptureError / ImageError / EndOfStream."""

    name = "source"

    def open(self) -> None:
        """Acquire the device (called again after a failure)."""

    @abstractmethod
    def read(self) -> np.ndarray:
        """Grab one image."""

    def close(self) -> None:
        """Release the device; safe to call twice."""

    @property
    def current(self) -> str:
        """A short name of the last frame read (file name for replays)."""
        return ""


class FolderSource(FrameSource):
    """Image files of a folder in name order; optionally start again at the end."""

    def __init__(self, folder: Path | str, loop: bool = True):
        from device.preprocess import IMAGE_SUFFIXES

        self.folder, self.loop, self._pos, self._current = Path(folder), loop, 0, ""
        self.name = f"folder {self.folder}"
        self._suffixes = IMAGE_SUFFIXES
        self._paths: list[Path] = []

    def open(self) -> None:
        try:
            self._paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in self._suffixes)
        except OSError as exc:
            raise CaptureError(f"{self.folder}: cannot list folder ({exc.strerror or exc})") from None
        if not self._paths:
            raise CaptureError(f"{self.folder}: no image files (expected .png, .jpg, ...)")

    def read(self) -> np.ndarray:
        from device.preprocess import load_image

        if self._pos >= len(self._paths):
            if not self.loop:
                raise EndOfStream(f"{self.folder}: end of replay ({len(self._paths)} images)")
            self._pos = 0
        path = self._paths[self._pos]
        self._pos += 1
        self._current = path.name
        return load_image(path)

    @property
    def current(self) -> str:
        return self._current


class OpenCVSource(FrameSource):
    """``cv2.VideoCapture`` on a V4L2 index, an RTSP/HTTP URL or a video file."""

    def __init__(self, cfg: CameraConfig):
        self.cfg, self._cap = cfg, None
        self.target: int | str = cfg.url or cfg.device
        self.is_file = bool(cfg.url) and "://" not in cfg.url
        self.name = f"opencv {self.target}"

    def open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"{self.name}: cannot open")
        if not self.is_file and isinstance(self.target, int):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            if self.cfg.exposure_us > 0:
                cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2: 1 = manual
                cap.set(cv2.CAP_PROP_EXPOSURE, self.cfg.exposure_us / 100.0)  # V4L2 units of 100 us
        self._cap = cap

    def read(self) -> np.ndarray:
        import cv2

        if self._cap is None:
            raise CaptureError(f"{self.name}: not open")
        ok, image = self._cap.read()
        if not ok and self.is_file:
            if not self.cfg.loop:
                raise EndOfStream(f"{self.name}: end of video")
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok or image is None:
            raise CaptureError(f"{self.name}: no frame")
        return image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class PiCameraSource(FrameSource):
    """A Raspberry Pi camera through picamera2 (imported only here), with exposure, gain and focus controls."""

    def __init__(self, cfg: CameraConfig):
        self.cfg, self._cam = cfg, None
        self.name = "picamera2"

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise CaptureError("picamera2 is not installed: expected 'sudo apt install python3-picamera2' "
                               "(and a venv with --system-site-packages)") from None
        try:
            cam = Picamera2()
            size = (self.cfg.width, self.cfg.height)
            cam.configure(cam.create_still_configuration(main={"size": size, "format": "RGB888"}, buffer_count=2))
            cam.set_controls(picamera_controls(self.cfg, set(cam.camera_controls)))
            cam.start()
        except (RuntimeError, OSError, IndexError, ValueError) as exc:
            raise CaptureError(f"picamera2: cannot open the camera ({exc})") from None
        self._cam = cam

    def read(self) -> np.ndarray:
        if self._cam is None:
            raise CaptureError("picamera2: not open")
        try:
            return self._cam.capture_array("main")  # "RGB888" is B, G, R in memory: what OpenCV expects
        except (RuntimeError, OSError) as exc:
            raise CaptureError(f"picamera2: capture failed ({exc})") from None

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.close()
            except (RuntimeError, OSError) as exc:
                logger.debug("picamera2 close: %s", exc)
            self._cam = None


def picamera_controls(cfg: CameraConfig, available: set[str]) -> dict:
    """libcamera controls for the config, limited to those the camera has (no AF on a fixed-focus module)."""
    controls: dict = {}
    if cfg.exposure_us > 0 and "ExposureTime" in available:
        controls.update(AeEnable=False, ExposureTime=int(cfg.exposure_us))
    if cfg.analogue_gain > 0 and "AnalogueGain" in available:
        controls["AnalogueGain"] = float(cfg.analogue_gain)
    if "AfMode" in available:
        if cfg.lens_position >= 0 and "LensPosition" in available:
            controls.update(AfMode=0, LensPosition=float(cfg.lens_position))  # 0 = manual
        else:
            controls["AfMode"] = 2  # continuous
    return controls


def open_source(cfg: CameraConfig) -> FrameSource:
    """The backend the config names (nothing is opened yet)."""
    if cfg.source == "folder":
        return FolderSource(cfg.path, cfg.loop)
    if cfg.source == "opencv":
        return OpenCVSource(cfg)
    return PiCameraSource(cfg)


def check_frame(image: object, width: int, height: int) -> np.ndarray:
    """Return the image if it is a non-empty uint8 gray/BGR array of the configured size, else raise ImageError."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise ImageError(f"empty frame (got {type(image).__name__} of shape {getattr(image, 'shape', None)})")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ImageError(f"frame of shape {image.shape}: expected gray or BGR")
    if image.dtype != np.uint8:
        from device.preprocess import _to_uint8

        image = _to_uint8(image)
    if image.shape[1] != width or image.shape[0] != height:
        raise ImageError(f"frame of {image.shape[1]}x{image.shape[0]}: expected {width}x{height} (camera.width x camera.height)")
    return image


class Capture:
    """A source made robust: checked frames, counted skips, reopen with backoff (time passed in)."""

    def __init__(self, cfg: CameraConfig, source: FrameSource | None = None,
                 wall_clock: Callable[[], float] = time.time):
        self.cfg, self.source, self._wall = cfg, source or open_source(cfg), wall_clock
        self.frames = self.bad_frames = self.failures = 0
        self._open, self._next_open_s, self._streak = False, 0.0, 0
        self.last_error = ""
        self.exhausted = False

    @property
    def healthy(self) -> bool:
        """Open and not currently failing."""
        return self._open and self._streak == 0

    def retry_in_s(self, now_s: float) -> float:
        """Seconds until the next reopen attempt (0 when open)."""
        return 0.0 if self._open else max(0.0, self._next_open_s - now_s)

    def read(self, now_s: float) -> Frame | None:
        """One checked frame, or None (camera down and waiting to reopen, or a bad frame skipped)."""
        if self.exhausted:
            return None
        if not self._open:
            if now_s < self._next_open_s:
                return None
            try:
                self.source.open()
            except CaptureError as exc:
                self._fail(exc, now_s)
                return None
            self._open = True
            if self._streak:
                logger.info("%s: reopened after %d failure(s)", self.source.name, self._streak)
        try:
            image = check_frame(self.source.read(), self.cfg.width, self.cfg.height)
        except EndOfStream as exc:
            logger.info("%s", exc)
            self.exhausted = True
            return None
        except CaptureError as exc:
            self._fail(exc, now_s)
            return None
        except ImageError as exc:
            self.bad_frames += 1
            self.last_error = str(exc)
            where = self.source.current or f"frame {self.frames + self.bad_frames}"
            logger.warning("%s skipped: %s (%d bad frames so far)", where, exc, self.bad_frames)
            return None
        self._streak = 0
        self.frames += 1
        return Frame(self.frames, self._wall(), image, self.source.current)

    def _fail(self, exc: Exception, now_s: float) -> None:
        self.source.close()
        self._open = False
        self.failures += 1
        self._streak += 1
        delay = min(self.cfg.reopen_max_s, self.cfg.reopen_min_s * 2 ** (self._streak - 1))
        self._next_open_s = now_s + delay
        self.last_error = str(exc)
        logger.warning("%s: %s; reopening in %.1f s (failure %d)", self.source.name, exc, delay, self._streak)

    def close(self) -> None:
        """Release the source."""
        self.source.close()
        self._open = False
