"""settings.json: typed window state and server settings, and files older Hearths wrote."""

from __future__ import annotations

import json
from pathlib import Path

from app.inference.protocol import SamplingParams
from app.settings import ServerSettings, Settings, WindowState, load_settings, save_settings


def test_settings_round_trip_as_types(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(ui=WindowState(geometry="AdnQyw==", chat_splitter=[200, 600, 300],
                                       settings_panel=False, conversation=7,
                                       finetune_run_to_offer="20261207-120000-abcd"),
                        server=ServerSettings(on=True, port=8400))
    settings.remember_sampling("m", SamplingParams(temperature=0.2, seed=3, stop=["x"]))
    save_settings(path, settings)
    assert load_settings(path) == settings


def test_a_file_from_before_the_types_still_loads(tmp_path: Path) -> None:
    """The server's switch and port were window state, with keys a newer Hearth may add."""
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({
        "load": {"n_ctx": 2048},
        "sampling_by_model": {"m": {"temperature": 0.3, "top_k": 20, "stop": ["###"],
                                    "an_option_from_the_future": 1}},
        "ui": {"geometry": "AdnQyw==", "chat_splitter": [1, 2, 3], "settings_panel": True,
               "conversation": 3, "server_on": True, "server_port": 8400,
               "finetune_run_to_offer": "r1", "a_panel_from_the_future": 1},
    }))
    notices: list[str] = []
    settings = load_settings(path, notices)
    assert notices == [] and settings.load.n_ctx == 2048
    assert settings.sampling_for("m") == SamplingParams(temperature=0.3, top_k=20,
                                                        stop=["###"])
    assert settings.server == ServerSettings(on=True, port=8400)
    assert settings.ui == WindowState("AdnQyw==", [1, 2, 3], True, 3, "r1")
    save_settings(path, settings)
    saved = json.loads(path.read_text())
    assert saved["server"] == {"on": True, "port": 8400} and "server_on" not in saved["ui"]


def test_a_wrong_typed_entry_keeps_the_file_aside(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"server": {"on": "yes"}}))
    notices: list[str] = []
    assert load_settings(path, notices) == Settings()
    assert len(notices) == 1 and "ServerSettings.on: expected bool" in notices[0]
    assert list(tmp_path.glob("settings.json.bad-*"))
