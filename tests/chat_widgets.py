"""The chat view's message widgets in the order shown, found without layout items.

``QLayout.itemAt`` hands Python a wrapper of a QWidgetItem that Qt deletes when its
widget leaves the layout; shiboken can later return that stale wrapper for a new object
at the same address. Seen once in the suite: a new message body's ``viewport()`` came
back as a QWidgetItem and the chat view raised in the Qt event loop. The view's own
widgets and ``QLayout.indexOf`` give the same order without making such wrappers.
"""

from __future__ import annotations

from ui.chat.conversation_view import ConversationView
from ui.chat.message_widget import MessageWidget


def shown_messages(view: ConversationView) -> list[MessageWidget]:
    widgets = list(view.widgets.values())
    if view.stream_widget is not None:
        widgets.append(view.stream_widget)
    layout = view.list_layout
    placed = [w for w in widgets if layout.indexOf(w) >= 0 and not w.isHidden()]
    return sorted(placed, key=layout.indexOf)
