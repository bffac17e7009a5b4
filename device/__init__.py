"""edgeocr device side: the recognizer and daemon that run on the Pi (no torch, no tensorflow)."""

__version__ = "0.1.0"
