"""Value widgets in a scrolling panel take the mouse wheel only once they are focused.

Qt's spin boxes, combo boxes and sliders change their value on the wheel whenever the
pointer is over them. In a panel that scrolls, the person is scrolling the panel: the
pointer passes over a box and the value under it changes without a word (the chat's
Context went from 4096 to 256 while reading down the settings). So, everywhere such
widgets sit in a scroll area, :func:`guard_wheel` makes them

- take focus by click or Tab only (``StrongFocus``: the default ``WheelFocus`` would let
  the wheel itself focus them), and
- pass the wheel on while they are not focused: the event is ignored, so Qt hands it to
  the parent and the panel scrolls as if the box were not there.

A focused box still steps on the wheel, which is what a person who clicked it expects.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QComboBox, QScrollBar, QWidget

GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)
"""The widgets whose value the wheel changes (scroll bars aside: scrolling is their job)."""


def is_guarded_kind(widget: QWidget) -> bool:
    return isinstance(widget, GUARDED) and not isinstance(widget, QScrollBar)


class WheelGuard(QObject):
    """The event filter: a wheel over an unfocused value widget goes to its parent."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget)
                and not watched.hasFocus()):
            event.ignore()  # ignored and filtered: Qt offers it to the parent widget
            return True
        return False


def guard_wheel(root: QWidget) -> WheelGuard:
    """Guard every value widget inside ``root`` (call again after adding more; a widget
    is guarded once however often it is called)."""
    guard = root.findChild(WheelGuard, "wheelGuard", Qt.FindChildOption.FindDirectChildrenOnly)
    if guard is None:
        guard = WheelGuard(root)
        guard.setObjectName("wheelGuard")
    for widget in root.findChildren(QWidget):
        if is_guarded_kind(widget):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(guard)
    return guard
