"""Golden tests: the shipped INT8 model on real photographed crops (the held-back DEV parts).

The floors sit a few points under what the shipped model measured when it was made (see its card's
metrics); a model change that reads real meters worse fails here. Needs the real DEV crops
($EDGEOCR_REAL_DATA or ../shared/data/real); skipped with a message when they are absent.
"""

import pytest

from helpers import MODEL, real_root

ROOT = real_root()
pytestmark = [
    pytest.mark.skipif(ROOT is None, reason="real DEV crops not found (set EDGEOCR_REAL_DATA)"),
    pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not built yet"),
]

# name in convert.data.REAL_SETS: (minimum exact match, maximum CER) on its held-back part.
# Measured at ship time (INT8): lcd 100.0% / 0.0%, rolling 98.9% / 1.1%, lines 41.3% / 16.7%, cute80 30.0% / 49.1%.
GOLDEN = {
    "lcd-digits": (0.97, 0.03),
    "rolling-digits": (0.96, 0.04),
    "meter-lcd-lines": (0.35, 0.22),
    "cute80": (0.22, 0.60),
}


@pytest.fixture(scope="module")
def recognizer():
    from device.recognize import Recognizer

    return Recognizer(MODEL)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_shipped_model_reads_real_crops(recognizer, name):
    from convert.data import REAL_SETS, read_labels, split_labels
    from convert.evaluate import score
    from device.preprocess import load_image

    folder, chars, icase = REAL_SETS[name]
    min_exact, max_cer = GOLDEN[name]
    rows = split_labels(read_labels(ROOT / folder))[1]
    predictions = [recognizer.read(load_image(r.path), chars).text for r in rows]
    result = score(predictions, [r.text for r in rows], ignore_case=icase)
    assert result.n >= 40
    assert result.exact >= min_exact, f"{name}: exact {result.exact:.3f} < {min_exact}"
    assert result.cer <= max_cer, f"{name}: CER {result.cer:.3f} > {max_cer}"
