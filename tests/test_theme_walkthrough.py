"""Theme repairs from issue 15's walkthrough: descenders on tabs, radio buttons and
status colours that can be seen on a dark theme."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QRadioButton, QStyle, QStyleOptionButton, QTabBar
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from ui import theme
from ui.main_window import MainWindow

DARK_BASE = "#1e1e1e"


def _dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, "#2b2b2b"),
                         (QPalette.ColorRole.WindowText, "#e0e0e0"),
                         (QPalette.ColorRole.Base, DARK_BASE),
                         (QPalette.ColorRole.Text, "#e0e0e0"),
                         (QPalette.ColorRole.Button, "#353535"),
                         (QPalette.ColorRole.ButtonText, "#e0e0e0"),
                         (QPalette.ColorRole.Highlight, "#3d7bd9")):
        palette.setColor(role, QColor(colour))
    return palette


def test_every_tab_of_the_window_has_room_for_descenders(qtbot: QtBot,
                                                         workspace: Workspace) -> None:
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    try:
        bars = window.findChildren(QTabBar)
        assert len(bars) >= 3  # the window's tabs, Models' and Fine-tune's sub-tabs
        plain = QTabBar()
        qtbot.addWidget(plain)
        plain.addTab("Discover on Hugging Face")
        for bar in bars:
            assert bar.tabRect(0).height() >= plain.tabRect(0).height() + \
                theme.TAB_EXTRA_HEIGHT, [bar.tabText(i) for i in range(bar.count())]
        assert window.minimumSizeHint().width() <= 780
    finally:
        window.close()


def _indicator_contrast(qtbot: QtBot, checked: bool, styled: bool) -> float:
    """The strongest contrast between the radio indicator's pixels and the background."""
    button = QRadioButton("Balanced")
    qtbot.addWidget(button)
    button.setPalette(_dark_palette())
    button.setAutoFillBackground(True)
    if styled:
        style = theme.HearthStyle()
        style.setParent(button)
        button.setStyle(style)
    button.setChecked(checked)
    button.resize(button.sizeHint())
    image = button.grab().toImage()
    option = QStyleOptionButton()
    option.initFrom(button)
    rect = button.style().subElementRect(QStyle.SubElement.SE_RadioButtonIndicator, option,
                                         button)
    background = image.pixelColor(QPoint(image.width() - 1, 0))
    return max(theme.contrast(image.pixelColor(QPoint(x, y)), background)
               for x in range(rect.left(), rect.right() + 1)
               for y in range(rect.top(), rect.bottom() + 1))


def test_radio_buttons_can_be_seen_on_a_dark_theme(qtbot: QtBot) -> None:
    for checked in (False, True):
        assert _indicator_contrast(qtbot, checked, styled=True) >= 3.0


def test_status_colours_read_on_a_dark_theme() -> None:
    dark = _dark_palette()
    for role in (theme.ERROR, theme.SUCCESS):
        assert theme.contrast(role, DARK_BASE) < 4.5  # the light-theme colour does not
    for role in (theme.ERROR, theme.SUCCESS, theme.PENDING, theme.MUTED):
        assert theme.contrast(theme.readable(role, dark), DARK_BASE) >= 4.5
    assert theme.readable(theme.ERROR, QPalette(QColor("#f0f0f0"))) == theme.ERROR
