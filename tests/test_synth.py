"""Synthetic crop renderer: labels, determinism, drum roll rule, degradations, font discovery."""

import re

import numpy as np
import pytest

from convert import synth
from convert import synth_degrade as dg
from convert.charset import CHARSET
from convert.fonts import FontLibrary, MissingFontsError, classify, default_library, discover, get_font

pytestmark = pytest.mark.convert


@pytest.fixture(scope="module")
def fonts() -> FontLibrary:
    return default_library()


def _check_sample(s: synth.Sample, kind: str) -> None:
    img = s.image
    assert img.dtype == np.uint8
    assert img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)
    h, w = img.shape[:2]
    assert 8 <= h <= 400 and 8 <= w <= 2000, img.shape
    assert img.std() > 1.0, "blank image"
    assert s.kind == kind
    assert s.text and s.text == s.text.strip() and "  " not in s.text
    assert all(c in CHARSET for c in s.text), s.text


@pytest.mark.parametrize("kind", synth.KINDS)
def test_every_kind_renders_a_sane_labelled_crop(kind, fonts):
    rng = np.random.default_rng(1234)
    for _ in range(12):
        _check_sample(synth.render(rng, kind, fonts=fonts), kind)


def test_mix_uses_every_kind_and_weights_are_valid(fonts):
    assert set(synth.DEFAULT_WEIGHTS) == set(synth.KINDS)
    assert all(w > 0 for w in synth.DEFAULT_WEIGHTS.values())
    rng = np.random.default_rng(7)
    kinds = [synth.render(rng, fonts=fonts).kind for _ in range(160)]
    assert set(kinds) == set(synth.KINDS)


def test_same_seed_same_sample_and_other_seed_differs(fonts):
    for seed in range(8):
        a = synth.render(np.random.default_rng(seed), fonts=fonts)
        b = synth.render(np.random.default_rng(seed), fonts=fonts)
        assert a.text == b.text and a.kind == b.kind
        assert a.image.shape == b.image.shape and np.array_equal(a.image, b.image)
    texts = {synth.render(np.random.default_rng(s), "seg7", fonts=fonts).text for s in range(8)}
    assert len(texts) > 4


def test_unknown_kind_is_rejected(fonts):
    with pytest.raises(ValueError, match="unknown synth kind"):
        synth.render(np.random.default_rng(0), "hieroglyph", fonts=fonts)


def test_seg7_labels_are_numbers_with_optional_unit(fonts):
    rng = np.random.default_rng(3)
    labels = [synth.render(rng, "seg7", fonts=fonts).text for _ in range(120)]
    units = "|".join(re.escape(u) for u in synth.UNITS)
    pattern = re.compile(rf"-?\d+(\.\d+)?( ({units}))?")
    assert all(pattern.fullmatch(t) for t in labels), [t for t in labels if not pattern.fullmatch(t)]
    with_unit = sum(" " in t for t in labels) / len(labels)
    assert 0.08 < with_unit < 0.35
    assert any("." in t for t in labels) and any(t.startswith("0") and len(t) > 1 for t in labels)


def test_seg7_ghost_covers_every_lit_segment(fonts):
    rng = np.random.default_rng(5)
    for main, small in (("!!-1234", "56"), ("007", ""), ("9", "1")):
        lit, ghost, box = synth.seg7_layers(rng, fonts, 40, main, small, ghost_all_dp=True)
        assert lit.sum() > 0 and ghost.sum() > lit.sum()
        on = lit > 0.5
        outside = (on & (ghost < 0.3)).sum() / on.sum()  # anti-aliased edges may differ by a pixel
        assert outside < 0.02, f"{main!r}: {outside:.1%} of lit pixels outside the unlit '8' cells"
        assert box[2] > box[0] and box[3] > box[1]


def test_most_lcd_panels_show_unlit_segments():
    rng = np.random.default_rng(11)
    panels = [synth._display_colours(rng) for _ in range(300)]
    lcd_ghosts = [g for _, _, g, led in panels if not led]
    assert 0.6 < len(lcd_ghosts) / len(panels) < 0.9
    assert np.mean([g >= 0.05 for g in lcd_ghosts]) > 0.8


def test_drum_label_is_the_digit_filling_most_of_the_window():
    assert synth.drum_label(3.0) == "3"
    assert synth.drum_label(3.3) == "3"
    assert synth.drum_label(3.7) == "4"
    assert synth.drum_label(9.8) == "0"  # 9 rolls over to 0
    assert synth.drum_label(0.2) == "0"
    rng = np.random.default_rng(0)
    vs = np.array([synth.sample_roll(rng) for _ in range(5000)])
    frac = vs - np.floor(vs)
    lo, hi = synth.AMBIGUOUS_ROLL
    assert np.all((vs >= 0) & (vs < 10))
    assert not np.any((frac > lo) & (frac < hi)), "ambiguous mid-roll position sampled"
    rolled = np.minimum(frac, 1 - frac) > 0.1
    assert 0.15 < rolled.mean() < 0.5  # some windows are caught mid-roll


@pytest.mark.parametrize("v, label_v, other_v", [(3.25, 3.0, 4.0), (3.75, 4.0, 3.0), (9.7, 0.0, 9.0), (0.3, 0.0, 1.0)])
def test_drum_window_looks_most_like_its_label(fonts, v, label_v, other_v):
    font = get_font(fonts.upright_sans[0], 40)
    def window(x: float) -> np.ndarray:
        return synth.drum_window_mask(font, x, 40, 56, 44.0)

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a > 0.5, b > 0.5
        return (a & b).sum() / max((a | b).sum(), 1)

    m = window(v)
    assert synth.drum_label(v) == synth.drum_label(label_v)
    assert iou(m, window(label_v)) > iou(m, window(other_v))


_IMAGES = [np.random.default_rng(0).integers(0, 256, (40, 120, 3), dtype=np.uint8),
           np.random.default_rng(1).integers(0, 256, (33, 90), dtype=np.uint8)]


@pytest.mark.parametrize("img", _IMAGES, ids=["bgr", "gray"])
def test_photometric_degradations_keep_dtype_and_shape(img):
    rng = np.random.default_rng(0)
    outs = [dg.gaussian_blur(img, 1.2), dg.motion_blur(img, 5, 30.0), dg.defocus(img, 1.7),
            dg.noise(img, rng, 5.0, 0.5), dg.contrast(img, 0.5, 10.0), dg.low_light(img, rng, 0.3),
            dg.illumination(img, rng, 0.5), dg.glare(img, rng, 0.8), dg.reflection(img, rng, 0.2),
            dg.dirt(img, rng, 0.4), dg.colour_cast(img, rng, 0.2), dg.jpeg(img, 20), dg.down_up(img, 0.4),
            dg.invert(img)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == img.shape
    assert not np.array_equal(dg.gaussian_blur(img, 1.2), img)
    assert np.array_equal(dg.invert(dg.invert(img)), img)
    for seed in range(20):
        out = dg.degrade(img, np.random.default_rng(seed), text_h=30.0)
        assert out.dtype == np.uint8 and out.shape == img.shape


def test_low_contrast_and_low_light_really_reduce_range():
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, 32:] = 200
    assert np.ptp(dg.contrast(img, 0.5, 0.0).astype(int)) <= 101
    assert dg.low_light(img, np.random.default_rng(0), 0.3).mean() < img.mean() * 0.5


def test_warp_and_crop_keep_the_box_inside_the_image():
    img = np.full((60, 200, 3), 128, np.uint8)
    box = (40.0, 15.0, 160.0, 45.0)
    for seed in range(10):
        out, b = dg.warp(img, np.random.default_rng(seed), box, rot_deg=5.0, shear=0.1, persp=0.1)
        assert out.dtype == np.uint8 and out.ndim == 3
        assert 0 <= b[0] < b[2] <= out.shape[1] + 1 and 0 <= b[1] < b[3] <= out.shape[0] + 1
    assert dg.crop(img, box, 5, 3, 5, 3).shape == (36, 130, 3)
    assert dg.crop(img, box, 500, 500, 500, 500).shape == img.shape  # clamped, never empty
    cl = dg.clutter(img, np.random.default_rng(0), box)
    assert cl.shape == img.shape and np.array_equal(cl[20:40, 60:140], img[20:40, 60:140])


def test_templates_expand_inside_the_charset():
    rng = np.random.default_rng(2)
    for t in synth._TEMPLATES:
        s = synth.fill_template(rng, t)
        assert "{" not in s and all(c in CHARSET for c in s), (t, s)
    assert re.fullmatch(r"LOT [A-Z]\d{4}-\d{2}", synth.fill_template(rng, "LOT {A}{d4}-{d2}"))


def test_dot_grid_is_binary_and_tight(fonts):
    g = synth.dot_grid(np.random.default_rng(0), fonts, "EXP 12:45")
    assert set(np.unique(g)) <= {0.0, 1.0}
    assert 5 <= g.shape[0] <= 16 and g.shape[1] > 3 * g.shape[0]
    assert g[0].any() and g[-1].any() and g[:, 0].any() and g[:, -1].any()


def test_font_discovery_finds_segment_fonts(fonts):
    assert any("DSEG7" in p for p in fonts.seg7) and any("DSEG14" in p for p in fonts.seg14)
    assert not any("SEGGCHAN" in p or "Weather" in p for p in fonts.seg7 + fonts.seg14)
    assert fonts.upright_sans and fonts.mono and fonts.text
    assert all(not FontLibrary.is_slanted(p) for p in fonts.upright_sans)
    for p in fonts.seg7[:3] + fonts.upright_sans[:3]:
        assert get_font(p, 20).getbbox("8")[3] > 10


def test_classify_sorts_by_name_and_drops_symbol_fonts():
    lib = classify(["/f/DSEG7Classic-Bold.ttf", "/f/DSEG14Modern-Italic.ttf", "/f/DSEGWeather.ttf",
                    "/f/DejaVuSansMono.ttf", "/f/DejaVuSerif.ttf", "/f/Lato-Bold.ttf", "/f/D050000L.otf",
                    "/g/Lato-Bold.ttf", "/f/TerminusTTF-4.46.0.ttf"])
    assert lib.seg7 == ("/f/DSEG7Classic-Bold.ttf",) and lib.seg14 == ("/f/DSEG14Modern-Italic.ttf",)
    assert lib.mono == ("/f/DejaVuSansMono.ttf",) and lib.serif == ("/f/DejaVuSerif.ttf",)
    assert lib.sans == ("/f/Lato-Bold.ttf",) and lib.dot == ("/f/TerminusTTF-4.46.0.ttf",)


def test_no_fonts_raises_with_install_hint(tmp_path):
    with pytest.raises(MissingFontsError, match="apt-get install fonts-dseg"):
        discover((str(tmp_path),))


def test_text_is_drawn_one_glyph_per_character(fonts):
    """Ligatures would draw a different text than the label: URW fonts turn "Nr." into "№"."""
    from PIL import ImageDraw, ImageFont

    urw = [p for p in fonts.text if p.endswith(("C059-Roman.otf", "NimbusRoman-Regular.otf"))]
    if not urw:
        pytest.skip("no URW base-35 font installed (apt fonts-urw-base35)")
    font = get_font(urw[0], 32)
    if font.layout_engine != ImageFont.Layout.RAQM:
        pytest.skip("Pillow without libraqm applies no ligatures")
    ligature = font.getlength("Nr.")
    assert ligature < font.getlength("N") + font.getlength("r") + font.getlength(".") - 5  # the font does fuse them
    mask = synth._draw((120, 60), [((5, 5), "Nr.", font)])
    ink = np.nonzero(mask.max(axis=0) > 0.5)[0]
    assert ink[-1] - ink[0] > ligature  # drawn as three glyphs, as wide as their advances
    im = synth.Image.new("L", (120, 60), 0)
    ImageDraw.Draw(im).text((5, 5), "Nr.", font=font, fill=255)
    assert not np.array_equal(np.asarray(im) > 127, mask > 0.5)
