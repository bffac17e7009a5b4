"""Font discovery for the synthetic renderer: system fonts sorted into the roles ``synth`` needs."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageFont

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
APT_PACKAGES = "fonts-dseg fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-terminus fonts-dotgothic16"

# Symbol, script and non-Latin fonts: useless (or misleading) for our charset.
_SKIP = re.compile(r"DSEGWeather|SEGGCHAN|D050000L|StandardSymbols|Z003|MathTeX|unifont|Hairline", re.I)
_MONO = re.compile(r"Mono|Code|Courier|Cousine|Inconsolata|Hack|3270|OCR|FiraCode|JetBrains", re.I)
_SERIF = re.compile(r"Serif|Roman|C059|P052|Caladea|Tinos|Bookman|Gelasio", re.I)
_DOT = re.compile(r"DotGothic|Terminus", re.I)
_SLANTED = re.compile(r"Italic|Oblique|Ita\b|Ita\.", re.I)
_BOLD = re.compile(r"Bold|Black|Heavy|Bd", re.I)


class MissingFontsError(RuntimeError):
    """Raised when the fonts the renderer needs are not installed."""


@dataclass(frozen=True)
class FontLibrary:
    """Font files by role. Every tuple is sorted, so picks are deterministic for a given rng."""

    seg7: tuple[str, ...]
    seg14: tuple[str, ...]
    dot: tuple[str, ...]
    mono: tuple[str, ...]
    sans: tuple[str, ...]
    serif: tuple[str, ...]

    @property
    def text(self) -> tuple[str, ...]:
        """All ordinary text fonts."""
        return self.sans + self.serif + self.mono

    @property
    def upright_sans(self) -> tuple[str, ...]:
        """Upright sans fonts: what drum counters and unit labels look like."""
        return tuple(p for p in self.sans if not _SLANTED.search(Path(p).name))

    @staticmethod
    def is_slanted(path: str) -> bool:
        """True for italic / oblique faces."""
        return bool(_SLANTED.search(Path(path).name))

    @staticmethod
    def is_bold(path: str) -> bool:
        """True for bold / black / heavy faces."""
        return bool(_BOLD.search(Path(path).name))


def classify(paths: list[str]) -> FontLibrary:
    """Sort font file paths into roles (pure: by file name only)."""
    roles: dict[str, list[str]] = {k: [] for k in ("seg7", "seg14", "dot", "mono", "sans", "serif")}
    seen: set[str] = set()
    for path in sorted(set(paths)):
        name = Path(path).name
        if _SKIP.search(name) or name in seen:  # the same face may be installed twice
            continue
        seen.add(name)
        if name.startswith("DSEG7"):
            roles["seg7"].append(path)
        elif name.startswith("DSEG14"):
            roles["seg14"].append(path)
        elif _DOT.search(name):
            roles["dot"].append(path)
        elif _MONO.search(name):
            roles["mono"].append(path)
        elif _SERIF.search(name):
            roles["serif"].append(path)
        else:
            roles["sans"].append(path)
    return FontLibrary(**{k: tuple(v) for k, v in roles.items()})


def discover(dirs: tuple[str, ...] = FONT_DIRS) -> FontLibrary:
    """Find ``.ttf`` / ``.otf`` files under ``dirs``; raise ``MissingFontsError`` if a role is empty."""
    paths: list[str] = []
    for d in dirs:
        root = Path(d).expanduser()
        if root.is_dir():
            paths += [str(p) for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    lib = classify(paths)
    missing = [k for k in ("seg7", "seg14", "sans") if not getattr(lib, k)]
    if missing:
        raise MissingFontsError(f"no {'/'.join(missing)} fonts found in {', '.join(dirs)}: "
                                f"apt-get install {APT_PACKAGES}")
    return lib


@functools.lru_cache(maxsize=1)
def default_library() -> FontLibrary:
    """The system's fonts, discovered once per process."""
    return discover()


@functools.lru_cache(maxsize=4096)
def get_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A loaded font at a pixel size (cached per process)."""
    return ImageFont.truetype(path, size)


def pick(rng: np.random.Generator, paths: tuple[str, ...]) -> str:
    """One path, uniformly."""
    return paths[int(rng.integers(len(paths)))]
