"""The series colours of every chart huntaze draws (dashboard SVG, PDF reports).

Distinguishable with the common colour-vision deficiencies (after Okabe-Ito and Tol) and
each at least 3:1 against white, the contrast WCAG asks of graphics.
"""

from __future__ import annotations

PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#007A5A",
    "#A8327D",
    "#7A5C00",
    "#332288",
    "#44546A",
    "#882255",
)


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def rgb(index: int) -> tuple[int, int, int]:
    value = colour(index).lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
