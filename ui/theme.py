"""Hearth's colours: one palette of named roles, and the two helpers that derive the rest.

Widgets ask for a role ("error", "success", "notice background"), never for a hex
value, so a colour changes in one place and means the same thing on every tab. Most of
the window follows the system's Qt palette (light or dark); the roles here are the few
that carry meaning of their own (a red error, a green "fits", a loss curve's colour),
picked to stay readable on both. Shades in between come from :func:`mix`, which moves
one colour towards another, so they follow the system theme too.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

# -- status: text and marks that say how something went -------------------------------
ERROR = "#d1242f"
"""Errors, failed and crashed states, the Stop button, a reply that went wrong."""
SUCCESS = "#1e8449"
"""Finished, valid, passed: text and the model bar's "ready" dot."""
PENDING = "#d4a72c"
"""Starting or loading: the model bar's dot while the model is not ready yet."""
MUTED = "#8c959f"
"""Captions, hints and the dot of a model that is not loaded: present but quiet."""

# -- notices: a pale background that draws the eye without alarming --------------------
NOTICE_BACKGROUND = "#fff4d6"
"""The resume banner on the Fine-tune tab."""
NOTICE_TEXT = "#4a3b00"
"""Text on :data:`NOTICE_BACKGROUND`."""
HIGHLIGHT_BACKGROUND = "#ffe9a8"
"""The part of a training record the model learns from (its loss-bearing tokens)."""
HIGHLIGHT_TEXT = "#3a2a00"
"""Text on :data:`HIGHLIGHT_BACKGROUND`."""

# -- memory fit: the library's and the hub's "will it fit?" cells ----------------------
FIT_BACKGROUND = {"green": "#cdeccd", "yellow": "#fbefb5", "red": "#f6c7c3"}
"""Cell backgrounds for the fit verdicts of :mod:`app.models.memory_fit`."""

# -- charts -----------------------------------------------------------------------------
TRAINING_LOSS = "#2d7ff9"
"""The training-loss curve."""
VALIDATION_LOSS = "#e8833a"
"""The validation-loss curve and points."""

# -- code blocks, when the Pygments style names no colour for plain text ----------------
CODE_TEXT = {False: "#24292f", True: "#e6edf3"}
"""Plain code text, keyed by "is the theme dark?"."""
CODE_MUTED = {False: "#57606a", True: "#8b949e"}
"""A code block's header (language name, copy hint), keyed by "is the theme dark?"."""


def is_dark(palette: QPalette) -> bool:
    """Whether the system theme is a dark one (the text area's background is dark)."""
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


def mix(a: QColor | str, b: QColor | str, t: float) -> str:
    """``a`` moved ``t`` of the way to ``b``: palette-derived colours for both themes."""
    a, b = QColor(a), QColor(b)
    return QColor(round(a.red() + (b.red() - a.red()) * t),
                  round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t)).name()


def colour_style(role: str) -> str:
    """A style sheet that colours a label's text: ``label.setStyleSheet(colour_style(ERROR))``."""
    return f"color: {role}"
