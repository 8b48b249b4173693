"""A small PDF writer for reports people print: headings, text, tables, a stacked bar chart.

A thin layer over fpdf2 (imported when a document is made, never at start-up) so every
PDF huntaze writes (finance reports, invoices) looks the same and takes its figures as
already formatted text: this module prints, it never computes money.

Text is set in DejaVu Sans, shipped inside the package (``reports/fonts``, with its
licence) and embedded as a subset of the glyphs used, so a campaign, tenant or model
name in Latin Extended, Greek or Cyrillic letters prints as itself and reads back from
the PDF's text. Hebrew and Arabic letters have glyphs but are set left to right without
shaping. DejaVu Sans has no CJK ideographs and few emoji: a character it lacks is
printed as ``?`` (never a blank box, and never a failed report).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from importlib.resources import files
from typing import TYPE_CHECKING

from huntaze_cli.reports.palette import rgb

if TYPE_CHECKING:
    from fpdf import FPDF


FONT = "dejavu"
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}


class PdfReport:
    """One A4 document built top to bottom; ``bytes()`` finishes it."""

    def __init__(self, title: str, *, subtitle: str = "") -> None:
        from fpdf import FPDF
        from fpdf.fonts import TTFFont

        self.pdf: FPDF = FPDF(orientation="portrait", unit="mm", format="A4")
        fonts = files("huntaze_cli.reports") / "fonts"
        for style, name in _FONT_FILES.items():
            self.pdf.add_font(FONT, style, str(fonts / name))
        # The code points the font has glyphs for (both styles cover the same ones).
        font = self.pdf.fonts[FONT]
        assert isinstance(font, TTFFont)
        self._covered: Container[int] = font.cmap
        self.pdf.set_title(self.printable(title))
        self.pdf.set_creator("huntaze")
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.add_page()
        self.pdf.set_font(FONT, "B", 16)
        self._line(title, 9)
        if subtitle:
            self.pdf.set_font(FONT, "", 10)
            self._line(subtitle, 6)
        self.pdf.ln(2)

    def printable(self, text: str) -> str:
        """``text`` as the embedded font can print it (characters it lacks become ``?``)."""
        if all(ord(ch) in self._covered for ch in text):
            return text
        return "".join(ch if ord(ch) in self._covered else "?" for ch in text)

    @property
    def width(self) -> float:
        return float(self.pdf.epw)

    def _line(self, text: str, height: float) -> None:
        from fpdf.enums import XPos, YPos

        self.pdf.cell(0, height, self.printable(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(self, text: str) -> None:
        if self.pdf.get_y() > self.pdf.h - 40:
            self.pdf.add_page()
        self.pdf.ln(3)
        self.pdf.set_font(FONT, "B", 12)
        self._line(text, 7)

    def text(self, text: str) -> None:
        self.pdf.set_font(FONT, "", 9)
        self.pdf.multi_cell(0, 5, self.printable(text))
        self.pdf.ln(1)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        widths: Sequence[float] | None = None,
        right: Sequence[int] = (),
        footer: Sequence[str] | None = None,
    ) -> None:
        """A table of text cells; column indexes in ``right`` are right-aligned."""
        from fpdf.enums import XPos, YPos

        shares = widths or [1.0] * len(columns)
        scale = self.width / sum(shares)
        cols = [share * scale for share in shares]

        def row(cells: Sequence[str], *, bold: bool = False, fill: bool = False) -> None:
            if self.pdf.get_y() > self.pdf.h - 20:
                self.pdf.add_page()
            self.pdf.set_font(FONT, "B" if bold else "", 8)
            self.pdf.set_fill_color(235, 238, 242)
            for index, (cell, width) in enumerate(zip(cells, cols, strict=True)):
                text = self.printable(cell)
                while len(text) > 3 and self.pdf.get_string_width(text) > width - 2:
                    text = text[:-2] + "~"
                self.pdf.cell(
                    width, 5.5, text, border="B", align="R" if index in right else "L",
                    fill=fill, new_x=XPos.RIGHT, new_y=YPos.TOP,
                )  # fmt: skip
            self.pdf.ln(5.5)

        row(columns, bold=True, fill=True)
        for cells in rows:
            row(cells)
        if footer is not None:
            row(footer, bold=True)

    def stacked_bars(
        self,
        labels: Sequence[str],
        series: Mapping[str, Sequence[int]],
        *,
        axis_max_text: str,
        height: float = 55,
    ) -> None:
        """Bars per label, one colour per series stacked; values are any integers
        (the caller's unit), scaled to the tallest bar; a legend below."""
        totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
        peak = max(totals, default=0) or 1
        if self.pdf.get_y() > self.pdf.h - height - 30:
            self.pdf.add_page()
        x0, y0 = self.pdf.l_margin + 18, self.pdf.get_y() + 2
        plot_w = self.width - 18
        step = plot_w / max(len(labels), 1)
        self.pdf.set_draw_color(120, 120, 120)
        self.pdf.line(x0, y0 + height, x0 + plot_w, y0 + height)
        self.pdf.line(x0, y0, x0, y0 + height)
        self.pdf.set_font(FONT, "", 7)
        self.pdf.text(self.pdf.l_margin, y0 + 3, self.printable(axis_max_text))
        self.pdf.text(self.pdf.l_margin, y0 + height, "0")
        for index, label in enumerate(labels):
            bottom = y0 + height
            for number, values in enumerate(series.values()):
                value = values[index]
                if value <= 0:
                    continue
                bar = height * value / peak
                self.pdf.set_fill_color(*rgb(number))
                self.pdf.rect(x0 + index * step + step * 0.15, bottom - bar, step * 0.7, bar, "F")
                bottom -= bar
            if len(labels) <= 16 or index % max(1, len(labels) // 10) == 0:
                self.pdf.text(x0 + index * step, y0 + height + 4, self.printable(label))
        self.pdf.set_y(y0 + height + 7)
        x = x0
        for number, name in enumerate(series):
            self.pdf.set_fill_color(*rgb(number))
            self.pdf.rect(x, self.pdf.get_y(), 3, 3, "F")
            self.pdf.text(x + 4, self.pdf.get_y() + 2.6, self.printable(name))
            x += 6 + self.pdf.get_string_width(self.printable(name)) + 4
        self.pdf.ln(7)

    def bytes(self) -> bytes:
        return bytes(self.pdf.output())
