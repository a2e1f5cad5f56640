"""Settings > Tools: the MCP servers a person has added, and the tools each offers.

Adding a server stores how to start it (:class:`app.tools.servers.ServerList`); it runs
only while a conversation uses it. To show what a server offers, the dialog starts it
briefly on a background thread (a Python server takes seconds; one that hangs is given
up after 30 s) and stops it again; a server that cannot start shows why. Everything a
server says (its tools' names and descriptions, its errors) is a stranger's text, shown
plain.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.tools.mcp_client import McpError, McpServer
from app.tools.servers import Listing, ServerEntry, ServerList, listing_of
from app.workspace import Workspace
from ui import theme
from ui.background import Background
from ui.untrusted import PlainLabel

INTRO = ("MCP servers offer tools that a conversation can call (switch them on in the "
         "chat's settings, under Tools). A server starts only while a conversation uses "
         "it, and every call is shown and asked about before it runs.")
WHERE_HINT = "python -m mcp_server_time --local-timezone UTC   or   http://127.0.0.1:8000/mcp"


def listing_text(found: Listing) -> str:
    """What a server offers, as plain text for the dialog."""
    if found.problem:
        return f"It did not start: {found.problem}"
    lines = [f"{len(found.tools)} tool{'s' if len(found.tools) != 1 else ''}:"]
    for tool in found.tools:
        first = (tool.get("description") or "").strip().splitlines()[:1]
        lines.append(f"• {tool['name']}" + (f": {first[0]}" if first else ""))
    lines += [f"Left out: {why}" for why in found.skipped]
    return "\n".join(lines)


class ToolsDialog(QDialog):
    servers_changed = Signal()

    def __init__(self, workspace: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Tools: MCP servers")
        self.resize(640, 520)
        self.servers = ServerList(workspace.home.root)
        self.logs = workspace.home.logs
        self.background = Background(self)
        self.listings: dict[str, Listing] = {}
        self._asking: set[str] = set()
        intro = PlainLabel(INTRO)
        intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.currentItemChanged.connect(lambda *_: self._show_tools())
        self.tools = QPlainTextEdit()  # names and descriptions come from the server
        self.tools.setReadOnly(True)
        self.tools.setPlaceholderText("Choose a server to see its tools.")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget this server (conversations stop using it)")
        self.remove_button.clicked.connect(self._on_remove)
        self.check_button = QPushButton("Check again")
        self.check_button.setToolTip("Start it briefly and ask again what it offers")
        self.check_button.clicked.connect(self._on_check)
        buttons = QHBoxLayout()
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional for a command: taken from it")
        self.where = QLineEdit()
        self.where.setPlaceholderText(WHERE_HINT)
        self.where.returnPressed.connect(self._on_add)
        self.add_button = QPushButton("Add server")
        self.add_button.clicked.connect(self._on_add)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Command or local URL", self.where)
        form.addRow("", self.add_button)
        self.error = PlainLabel()
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet(f"color: {theme.readable(theme.ERROR, self.palette())};")
        self.error.hide()
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.tools, 2)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(close)
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        """List the added servers again (another window or ``hearth tools`` may have
        changed them)."""
        current = select or self.selected()
        blocked = self.list.blockSignals(True)
        self.list.clear()
        for entry in self.servers.entries():
            item = QListWidgetItem(f"{entry.name}  —  {entry.url or entry.command}")
            item.setData(Qt.ItemDataRole.UserRole, entry.name)
            self.list.addItem(item)
            if entry.name == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(blocked)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._say("\n".join(self.servers.notices))
        self.servers.notices.clear()
        self._show_tools()

    def selected(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _entry(self, name: str) -> ServerEntry | None:
        return next((e for e in self.servers.entries() if e.name == name), None)

    def _show_tools(self) -> None:
        name = self.selected()
        self.remove_button.setEnabled(name is not None)
        self.check_button.setEnabled(name is not None and name not in self._asking)
        if name is None:
            self.tools.setPlainText("")
            return
        found = self.listings.get(name)
        if found is not None:
            self.tools.setPlainText(listing_text(found))
        elif name in self._asking:
            self.tools.setPlainText(f"Starting {name} to ask what it offers…")
        else:
            self._ask(name)

    def _ask(self, name: str) -> None:
        """Start the server briefly off the GUI thread and show what it offers."""
        entry = self._entry(name)
        if entry is None or name in self._asking:
            return
        try:
            server = entry.server()
        except McpError as exc:
            self.listings[name] = Listing(name, str(exc))
            self._show_tools()
            return
        self._asking.add(name)
        self._show_tools()
        self.background.run(lambda: listing_of(server, self.logs),
                            lambda found: self._on_listed(name, found),
                            lambda exc: self._on_listed(name, Listing(name, str(exc))),
                            name="mcp-list")

    def _on_listed(self, name: str, found: Listing) -> None:
        self._asking.discard(name)
        self.listings[name] = found
        if self.selected() == name:
            self._show_tools()

    def _on_check(self) -> None:
        name = self.selected()
        if name is not None:
            self.listings.pop(name, None)
            self._ask(name)

    def _on_add(self) -> None:
        where, name = self.where.text().strip(), self.name.text().strip()
        is_url = where.lower().startswith(("http://", "https://"))
        try:
            if not where:
                raise McpError("write the command that starts the server, or its local URL")
            if not name and is_url:
                raise McpError("give a server at a URL a name")
            name = name or McpServer.from_command(where).name
            self.servers.add(ServerEntry(name, "" if is_url else where, where if is_url else ""))
        except McpError as exc:
            self._say(str(exc))
            return
        self._say("")
        self.name.clear()
        self.where.clear()
        self.listings.pop(name, None)
        self.refresh(select=name)
        self.servers_changed.emit()

    def _on_remove(self) -> None:
        name = self.selected()
        if name is None:
            return
        try:
            self.servers.remove(name)
        except McpError as exc:
            self._say(str(exc))
            return
        self.listings.pop(name, None)
        self.refresh()
        self.servers_changed.emit()

    def _say(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def shutdown(self) -> None:
        """Wait for a server being asked (the window is closing); each gives up by 30 s."""
        self.background.shutdown(timeout=35)
