"""The recognizer's characters. Class 0 is the CTC blank; class i (i >= 1) is ``CHARSET[i - 1]``."""

from __future__ import annotations

DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
PUNCT = " .,:;-+/#%()*'&_=<>!?"
CHARSET = DIGITS + UPPER + LOWER + PUNCT
BLANK_INDEX = 0
METER_CHARS = DIGITS + ".-"


def encode(text: str, charset: str = CHARSET) -> list[int]:
    """Text -> class indices (blank is 0); raise ``ValueError`` naming an unknown character."""
    index = {c: i + 1 for i, c in enumerate(charset)}
    try:
        return [index[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"{text!r}: character {exc.args[0]!r} is not in the charset") from None


def normalise_label(text: str, charset: str = CHARSET) -> str | None:
    """Map a label to the charset (common look-alikes folded); ``None`` if something stays unknown."""
    folded = text.replace("\u00b3", "3").replace("\u00b2", "2").replace("\u2013", "-").replace("\u2014", "-")
    return folded if all(c in charset for c in folded) else None
