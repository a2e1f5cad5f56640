"""hearth chat, bench and doctor write into the data folder (conversations, kernels.json,
the base-model cache), so like the other writing commands they refuse to run while
another Hearth holds it, and say which process does; reading commands still run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import _writer, build_parser
from tests.test_home_safety import _holder, hearth


@pytest.mark.parametrize(("argv", "who"), [
    (["chat", "-p", "hi"], "hearth chat"),
    (["doctor"], "hearth doctor"),
    (["bench", "inference"], "hearth bench inference"),
    (["bench", "finetune"], "hearth bench finetune"),
    (["models", "list"], None),
    (["serve"], None),
    (["docs", "add", "notes/"], "hearth docs add"),
    (["docs", "rm", "-c", "notes"], "hearth docs rm"),
    (["docs", "search", "pruning"], None),
    (["docs", "list"], None),
])
def test_writing_commands_take_the_folder_lock(argv: list[str], who: str | None) -> None:
    assert _writer(build_parser().parse_args(argv)) == who


def test_chat_and_doctor_refuse_beside_the_app_and_name_it(home_dir: Path) -> None:
    holder = _holder(home_dir)
    try:
        for argv in (["chat", "-p", "hi"], ["doctor"], ["bench", "inference"]):
            result = hearth(home_dir, *argv)
            assert result.returncode == 1, (argv, result.stderr)
            assert f"in use by another Hearth, process {holder.pid}" in result.stderr
            assert "Traceback" not in result.stderr
        listed = hearth(home_dir, "models", "list", "--json")  # reading is fine
        assert listed.returncode == 0 and json.loads(listed.stdout) is not None
    finally:
        holder.communicate("\n", timeout=30)
