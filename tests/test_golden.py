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
# Measured at ship time (INT8): lcd 100.0% / 0.0%, rolling 99.8% / 0.2%, lines 50.0% / 13.9%, cute80 25.0% / 50.9%.
GOLDEN = {
    "lcd-digits": (0.97, 0.03),
    "rolling-digits": (0.98, 0.02),
    "meter-lcd-lines": (0.45, 0.17),
    "cute80": (0.20, 0.56),
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
