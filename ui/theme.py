"""Hearth's colours: one palette of named roles, and the two helpers that derive the rest.

Widgets ask for a role ("error", "success", "notice background"), never for a hex
value, so a colour changes in one place and means the same thing on every tab. Most of
the window follows the system's Qt palette (light or dark); the roles here are the few
that carry meaning of their own (a red error, a green "fits", a loss curve's colour),
picked to stay readable on both. Shades in between come from :func:`mix`, which moves
one colour towards another, so they follow the system theme too.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QProxyStyle,
    QRadioButton,
    QStyle,
    QStyleOption,
    QTabBar,
    QToolButton,
    QWidget,
)

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


ON_DARK = {ERROR: "#ff7b72", SUCCESS: "#3fb950", PENDING: "#e3b341", MUTED: "#9da7b1"}
"""The status roles as drawn on a dark theme: the light-theme reds and greens are too dark
to read on a dark background (contrast under 3:1)."""


def readable(role: str, palette: QPalette | None = None) -> str:
    """``role`` as it reads on ``palette`` (the application's by default)."""
    from PySide6.QtGui import QGuiApplication

    dark = is_dark(palette if palette is not None else QGuiApplication.palette())
    return ON_DARK.get(role, role) if dark else role


def colour_style(role: str) -> str:
    """A style sheet that colours a label's text: ``label.setStyleSheet(colour_style(ERROR))``.
    The colour is the role's readable one on the current theme (:func:`readable`)."""
    return f"color: {readable(role)}"


TAB_EXTRA_HEIGHT = 4
"""Pixels added under a tab's text: Fusion draws an inactive tab 2 px lower inside the
same height, which cut the descenders off "Hugging" on the Models tab's sub-tabs."""


def contrast(a: QColor | str, b: QColor | str) -> float:
    """The WCAG contrast ratio of two colours (1 to 21; text wants 4.5, marks 3)."""
    def luminance(colour: QColor) -> float:
        channels = [c / 255 for c in (colour.red(), colour.green(), colour.blue())]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    la, lb = sorted((luminance(QColor(a)), luminance(QColor(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


class HearthStyle(QProxyStyle):
    """The application's own style with two repairs the walkthrough asked for: tabs tall
    enough for their descenders, and radio buttons that can be seen on a dark theme
    (Fusion draws a near-black ring and a grey dot on a near-black background)."""

    def sizeFromContents(self, kind: QStyle.ContentsType, option: QStyleOption | None,
                         size: QSize, widget: QWidget | None = None) -> QSize:
        result = super().sizeFromContents(kind, option, size, widget)
        if kind == QStyle.ContentsType.CT_TabBarTab:
            result.setHeight(result.height() + TAB_EXTRA_HEIGHT)
        return result

    def drawPrimitive(self, element: QStyle.PrimitiveElement, option: QStyleOption,
                      painter: QPainter, widget: QWidget | None = None) -> None:
        if (element != QStyle.PrimitiveElement.PE_IndicatorRadioButton
                or not is_dark(option.palette)):
            super().drawPrimitive(element, option, painter, widget)
            return
        palette = option.palette
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        ring = QRectF(option.rect).adjusted(1.5, 1.5, -1.5, -1.5)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(mix(base, text, 0.65)), 1.3))
        painter.setBrush(QColor(mix(base, text, 0.06)))
        painter.drawEllipse(ring)
        if option.state & QStyle.StateFlag.State_On:
            inset = ring.width() * 0.27
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(mix(palette.color(QPalette.ColorRole.Highlight),
                                        text, 0.35)))
            painter.drawEllipse(ring.adjusted(inset, inset, -inset, -inset))
        painter.restore()


def apply_style(root: QWidget) -> HearthStyle:
    """Give every tab bar and radio button under ``root`` :class:`HearthStyle`; keep
    the returned style alive as long as ``root`` (a widget does not own its style)."""
    style = HearthStyle()
    style.setParent(root)
    for widget in (*root.findChildren(QTabBar), *root.findChildren(QRadioButton)):
        widget.setStyle(style)
    return style


def action_button(text: str, tip: str) -> QToolButton:
    """A flat text action under a message (Copy, Edit, ‹ ›…), styled as one family."""
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setAutoRaise(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    button.setObjectName("messageAction")
    return button
