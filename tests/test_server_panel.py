"""The app's server switch and the chat's structured-output setting, driven like a person
would, with the real worker and starter model: the server answers the openai client
with the chat's own model (one worker) while the chat answers too."""

from __future__ import annotations

import json
import socket
import threading

import openai
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from app.inference import protocol as p
from app.serve.security import key_path
from app.workspace import Workspace
from tests.starter_window import WAIT_MS
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow
PERSON = {"type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(qtbot: QtBot, win: MainWindow, text: str) -> object:
    with qtbot.waitSignal(win.chat.reply_finished, timeout=WAIT_MS) as finished:
        editor = win.chat_page.composer.editor
        editor.setPlainText(text)
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    return finished.args[0]


def test_the_switch_serves_the_chat_model_beside_the_chat(
        qtbot: QtBot, starter_window: MainWindow, workspace: Workspace) -> None:
    button, panel = starter_window.server_button, starter_window.server_button.panel
    assert button.text() == "API server: off" and panel.server is None
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert panel.isVisible()
    port = _free_port()
    panel.port.setValue(port)
    panel.switch.click()
    assert panel.server is not None and button.text() == f"API server: on :{port}"
    assert panel.url.text() == f"http://127.0.0.1:{port}/v1"
    assert panel.key.echoMode() == QLineEdit.EchoMode.Password
    assert panel.key.text() == key_path(workspace.home.root).read_text().strip()
    panel.show_key.click()
    assert panel.key.echoMode() == QLineEdit.EchoMode.Normal
    name = starter_window.chat.model_name
    assert name is not None and repr(name) in panel.status.text()

    api = openai.OpenAI(base_url=panel.url.text(), api_key=panel.key.text(), max_retries=0)
    served: list[str] = []
    asking = threading.Thread(target=lambda: served.append("".join(
        c.choices[0].delta.content or "" for c in api.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
            temperature=0, stream=True) if c.choices)))
    asking.start()
    reply = _send(qtbot, starter_window, "Hi")  # the chat's own turn, through the same worker
    qtbot.waitUntil(lambda: not asking.is_alive(), timeout=WAIT_MS)
    assert served and served[0] == reply.text  # greedy: the same answer, one model
    assert starter_window.bridge.client.alive
    with pytest.raises(openai.NotFoundError, match="no model"):
        api.chat.completions.create(model="another-model", messages=[
            {"role": "user", "content": "Hi"}], max_tokens=2)
    other = workspace.library.register(workspace.library.get(name).path, "Other").name
    assert other in [m.id for m in api.models.list()]
    with pytest.raises(openai.ConflictError, match="loaded"):  # the chat's choice stands
        api.chat.completions.create(model=other, messages=[
            {"role": "user", "content": "Hi"}], max_tokens=2)
    assert starter_window.chat.model_name == name
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=panel.url.text(), api_key="wrong",
                      max_retries=0).models.list()

    panel.switch.click()  # off
    assert panel.server is None and button.text() == "API server: off"
    assert workspace.settings.server.on is False
    with pytest.raises(openai.APIConnectionError):
        api.models.list()


def test_a_json_schema_in_the_chat_settings_shapes_the_reply(
        qtbot: QtBot, starter_window: MainWindow) -> None:
    box = starter_window.chat_page.settings_panel.structure
    box.mode.setCurrentIndex(box.mode.findData("json_schema"))
    box.editor.setPlainText("{not json")
    box.flush()
    assert "Not applied" in box.hint.text() and not starter_window.chat.sampling.json_schema
    box.editor.setPlainText(json.dumps(PERSON))
    box.flush()
    assert json.loads(starter_window.chat.sampling.json_schema) == PERSON
    sampling = starter_window.chat.sampling
    starter_window.chat.set_sampling(p.SamplingParams(**{**sampling.__dict__, "max_tokens": 60,
                                                         "temperature": 0.7}))
    assert box.mode.currentData() == "json_schema"  # other edits keep the schema
    reply = _send(qtbot, starter_window, "Describe a person.")
    person = json.loads(reply.text)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)
    assert isinstance(person["name"], str)
    box.mode.setCurrentIndex(box.mode.findData("free"))
    sampling = starter_window.chat.sampling
    assert sampling.json_schema == "" and sampling.grammar == ""


def test_the_switch_comes_back_on_with_the_window(qtbot: QtBot, workspace: Workspace,
                                                  starter_window: MainWindow) -> None:
    panel = starter_window.server_button.panel
    panel.port.setValue(_free_port())
    panel.switch.click()
    assert workspace.settings.server.on is True
    starter_window.close()
    again = MainWindow(workspace)
    qtbot.addWidget(again)
    try:
        assert again.server_button.panel.server is not None
        assert again.server_button.panel.port.value() == panel.port.value()
    finally:
        again.close()
    assert again.server_button.panel.server is None
