"""The app's switch for the local OpenAI-compatible server (:mod:`app.serve`).

A status-bar button says whether the server is on and opens a small panel: the switch,
the port, the address to give a client, and the API key (hidden, with Show and Copy).
The server answers with the chat's model through the chat's own worker, so turning it
on costs no memory; it never changes the chat's model (:class:`app.serve.models.ChatModel`).
Whether it is on and on which port are remembered in the settings
(:class:`app.settings.ServerSettings`).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.serve.models import ChatModel
from app.serve.security import WeakKey, api_key
from app.serve.server import DEFAULT_PORT, LocalServer
from app.settings import ServerSettings
from app.workspace import Workspace
from ui.chat.chat_view_model import ChatViewModel, ModelState
from ui.untrusted import PlainLabel


class ServerPanel(QDialog):
    """Turns the server on and off and shows how to reach it."""

    running_changed = Signal(bool)

    def __init__(self, workspace: Workspace, chat: ChatViewModel,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Local API server")
        self.workspace = workspace
        self.chat = chat
        self.server: LocalServer | None = None
        self.host = ChatModel(workspace, chat.client, self._chat_model)
        self._build()
        self._connect()
        self.port.setValue(workspace.settings.server.port or DEFAULT_PORT)
        self._show()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.switch = QCheckBox("Serve the chat's model to OpenAI clients on this computer")
        layout.addWidget(self.switch)
        form = QFormLayout()
        self.port = QSpinBox(minimum=1024, maximum=65535)
        form.addRow("Port", self.port)
        self.url = QLineEdit(readOnly=True)
        self.copy_url = QPushButton("Copy")
        form.addRow("Address", _row(self.url, self.copy_url))
        self.key = QLineEdit(readOnly=True, echoMode=QLineEdit.EchoMode.Password)
        self.key.setMinimumWidth(260)
        self.show_key = QPushButton("Show", checkable=True)
        self.copy_key = QPushButton("Copy")
        form.addRow("API key", _row(self.key, self.show_key, self.copy_key))
        layout.addLayout(form)
        self.status = PlainLabel()
        self.status.setWordWrap(True)
        self.status.setObjectName("statsLabel")
        layout.addWidget(self.status)

    def _connect(self) -> None:
        self.switch.toggled.connect(self._on_switch)
        self.show_key.toggled.connect(self._on_show_key)
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(
            self.key.text()))
        self.copy_url.clicked.connect(lambda: QGuiApplication.clipboard().setText(
            self.url.text()))
        self.chat.model_state_changed.connect(self._show)

    def _chat_model(self) -> str | None:
        """Read on the server's threads: plain attributes, no Qt calls."""
        return self.chat.model_name if self.chat.state == ModelState.READY else None

    # ---------------------------------------------------------------- switch

    def start(self) -> bool:
        """Turn the server on; False (and the reason shown) when it cannot listen."""
        if self.server is not None:
            return True
        notices: list[str] = []  # a damaged key file kept aside and a new key made
        try:
            key = api_key(self.workspace.home.root, notices)
            self.server = LocalServer(self.host, key, self.port.value())
        except WeakKey as exc:  # a too-short $HEARTH_API_KEY: say so, stay off
            self.status.setText(str(exc))
            self.switch.setChecked(False)
            return False
        except OSError as exc:
            self.status.setText(f"Cannot listen on port {self.port.value()}: "
                                f"{exc.strerror or exc}. Choose another port.")
            self.switch.setChecked(False)
            return False
        self.server.start()
        self.key.setText(key)
        self._remember(True)
        self._show()
        if notices:  # here, and in the window's notices when it happens at start
            self.status.setText(" ".join(notices))
            self.workspace.notices.extend(notices)
        self.running_changed.emit(True)
        return True

    def stop(self) -> None:
        if self.server is None:
            return
        server, self.server = self.server, None
        server.stop()
        self._remember(False)
        self._show()
        self.running_changed.emit(False)

    def shutdown(self) -> None:
        """The window closes: stop serving, but keep the remembered switch as it was."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _remember(self, on: bool) -> None:
        self.workspace.settings.server = ServerSettings(on, self.port.value())
        self.workspace.save_settings()

    def _on_switch(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop()

    def _on_show_key(self, shown: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if shown
                             else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hide" if shown else "Show")

    def _show(self) -> None:
        on = self.server is not None
        self.switch.blockSignals(True)
        self.switch.setChecked(on)
        self.switch.blockSignals(False)
        self.port.setEnabled(not on)
        self.url.setText(self.server.url if self.server is not None else "")
        for widget in (self.url, self.copy_url, self.key, self.show_key, self.copy_key):
            widget.setEnabled(on)
        if not on:
            self.status.setText("Off. When on, it listens on 127.0.0.1 only and asks "
                                "every client for the API key.")
            return
        model = self._chat_model()
        self.status.setText(
            f"Serving {model!r} (ask for it by this name) to clients on this computer; "
            "requests wait behind your chat's replies." if model else
            "On, but no model is ready: load one in the chat.")


class ServerButton(QPushButton):
    """The status-bar switch: says whether the server is on, and opens its panel."""

    def __init__(self, workspace: Workspace, chat: ChatViewModel,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolTip("A local OpenAI-compatible server for the chat's model")
        self.panel = ServerPanel(workspace, chat, parent=self.window() if parent else None)
        self.panel.running_changed.connect(self._on_running_changed)
        self.clicked.connect(self._on_clicked)
        self._on_running_changed(False)
        if workspace.settings.server.on:
            self.panel.start()

    def _on_clicked(self) -> None:
        self.panel.show()
        self.panel.raise_()

    def _on_running_changed(self, on: bool) -> None:
        server = self.panel.server
        self.setText(f"API server: on :{server.port}" if on and server else "API server: off")

    def shutdown(self) -> None:
        self.panel.shutdown()


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return box
