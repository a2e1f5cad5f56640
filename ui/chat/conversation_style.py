"""How the conversation page looks: the message bubbles, labels, empty state and problem
card, derived from the palette so that light, dark and high-contrast themes all read
well; the page sets it again whenever the palette changes."""

from __future__ import annotations

from PySide6.QtGui import QPalette

from ui import theme
from ui.theme import is_dark, mix


def conversation_style_sheet(palette: QPalette) -> str:
    base = palette.color(QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorRole.Text)
    accent = palette.color(QPalette.ColorRole.Highlight)
    muted = mix(base, text, 0.55)
    bubble = mix(base, accent, 0.22 if is_dark(palette) else 0.10)
    problem_bg = mix(base, theme.ERROR, 0.14)
    return f"""
        QFrame#userMessage {{ background: {bubble}; border-radius: 14px;
                              margin-left: 64px; }}
        QFrame#assistantMessage {{ background: transparent; }}
        QLabel#roleLabel {{ font-weight: 600; color: {mix(base, text, 0.75)}; }}
        QLabel#statsLabel, QLabel#noteLabel {{ color: {muted}; font-size: 11px; }}
        QLabel#noteLabel {{ font-style: italic; }}
        QLabel#emptyState {{ color: {muted}; font-size: 15px; padding-top: 120px; }}
        QFrame#problemCard {{ background: {problem_bg}; border-radius: 10px;
                              border: 1px solid {mix(base, theme.ERROR, 0.45)}; }}
        QFrame#toolCard {{ background: {mix(base, text, 0.035)}; border-radius: 10px;
                           border: 1px solid {mix(base, text, 0.16)}; }}
        QLabel#toolTitle {{ font-weight: 600; }}
        QToolButton#messageAction {{ color: {muted}; padding: 2px 6px;
                                     border-radius: 6px; }}
        QToolButton#messageAction:hover {{ background: {mix(base, text, 0.08)};
                                           color: {text.name()}; }}
    """
