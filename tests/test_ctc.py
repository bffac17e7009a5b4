"""Greedy CTC decoding with allowed characters and confidences."""

import numpy as np

from device.ctc import allowed_mask, ctc_greedy_decode

CHARSET = "0123456789.AB"


def _probs(path: list[int], classes: int = len(CHARSET) + 1, p: float = 0.9) -> np.ndarray:
    out = np.full((len(path), classes), (1 - p) / (classes - 1), np.float32)
    out[np.arange(len(path)), path] = p
    return out


def test_merges_repeats_and_drops_blanks():
    # classes: 0 blank, 1 '0', 2 '1', ... ; path "1 1 _ 1 2 _" -> "001"
    read = ctc_greedy_decode(_probs([1, 1, 0, 1, 2, 0]), CHARSET)
    assert read.text == "001"
    assert len(read.char_confidences) == 3
    assert abs(read.confidence - 0.9) < 1e-5


def test_allowed_characters_pick_the_best_allowed_class():
    probs = _probs([12, 0, 3])  # 'A', blank, '2'
    probs[0, 9] = 0.05  # '8' is the runner-up in frame 0
    read = ctc_greedy_decode(probs, CHARSET, mask=allowed_mask(CHARSET, 0, "0123456789"))
    assert read.text == "82"
    assert read.confidence < 0.9  # the weakest frame is the renormalised runner-up


def test_empty_read():
    read = ctc_greedy_decode(_probs([0, 0, 0]), CHARSET)
    assert read.text == "" and read.char_confidences == ()
