"""The fonts both PDFs draw with (the report, `pdf.py`, and the transcript's, `transcript_pdf`).

One place chooses them, once per process (`chosen()`):

- **DejaVu**, from Debian's fonts-dejavu-core (dev/setup.sh installs it): DejaVu Sans and Sans
  Bold for the report's text, DejaVu Sans Mono for digests, serials and the transcript. They are
  embedded in the PDF (the characters used only), so a name such as "Łukasz Żółć", "Ιωάννα" or
  "Дмитрий" is drawn as written, on any reader, with no font installed where it is read.
- **The PDF standard fonts** (Helvetica, Helvetica-Bold, Courier) where any of those three files
  is missing or unreadable: a machine without the package still writes both PDFs, as before.
  They draw Latin-1 (WinAnsi) only.

Either way `Fonts.drawable` is what reaches the page: every character the fonts have a glyph for
as itself, else without its accent where that leaves one character they have ("ż" as "z"), else
"?". One character for one, so the transcript's columns stay where they were, and no glyph
silently vanishes. The journal and the text transcript keep the exact text.

The same input gives the same bytes with the same font files (reportlab's invariant mode; the
embedded subset is cut from the file, so another DejaVu release gives other bytes).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

#: Where Debian's fonts-dejavu-core puts its TrueType files.
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
#: The files used, by the name each is registered under with reportlab.
DEJAVU = {"DejaVuSans": "DejaVuSans.ttf", "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
          "DejaVuSansMono": "DejaVuSansMono.ttf"}


@dataclass(frozen=True)
class Fonts:
    """The font names to draw with, and what they can draw."""

    sans: str
    bold: str
    mono: str
    #: True when the DejaVu files are embedded; False for the standard fonts' fallback.
    embedded: bool
    #: Whether all three fonts have a glyph for a character.
    draws: Callable[[str], bool]

    @property
    def advance(self) -> float:
        """The width of one character of `mono` at 1 pt (0.6 for Courier, 0.602 for DejaVu)."""
        return pdfmetrics.stringWidth("0", self.mono, 1)

    def drawable(self, text: Any) -> str:
        """`text` as these fonts draw it: each character as itself, else without its accent,
        else '?', one for one (tabs and line ends pass: they are a paragraph's spaces)."""
        out = []
        for ch in str(text):
            if ch in "\t\n\r" or self.draws(ch):
                out.append(ch)
                continue
            base = "".join(c for c in unicodedata.normalize("NFKD", ch)
                           if not unicodedata.combining(c))
            out.append(base if len(base) == 1 and self.draws(base) else "?")
        return "".join(out)


def _cp1252(ch: str) -> bool:
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


#: The fallback: the PDF standard fonts, which draw WinAnsi (cp1252) only.
STANDARD = Fonts(sans="Helvetica", bold="Helvetica-Bold", mono="Courier", embedded=False,
                 draws=_cp1252)


def load(directory: Path = FONT_DIR) -> Fonts:
    """DejaVu from `directory`, registered with reportlab; `STANDARD` if any file is missing or
    is not a TrueType font reportlab reads."""
    try:
        faces = [TTFont(name, str(directory / file)) for name, file in DEJAVU.items()]
    except (OSError, TTFError):
        return STANDARD
    for font in faces:
        pdfmetrics.registerFont(font)
    sans, bold, mono = DEJAVU
    # what <b> inside a paragraph of each means
    pdfmetrics.registerFontFamily(sans, normal=sans, bold=bold, italic=sans, boldItalic=bold)
    pdfmetrics.registerFontFamily(mono, normal=mono, bold=mono, italic=mono, boldItalic=mono)
    glyphs = frozenset.intersection(*(frozenset(f.face.charToGlyph) for f in faces))
    return Fonts(sans=sans, bold=bold, mono=mono, embedded=True,
                 draws=lambda ch: ord(ch) in glyphs)


@functools.cache
def chosen() -> Fonts:
    """The fonts of this process's PDFs: DejaVu if its files are there, else the standard
    fonts (read once: reportlab's registry of fonts is global)."""
    return load(FONT_DIR)
