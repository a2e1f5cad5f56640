"""Dataset detection, validation messages, de-duplication and the split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.finetune.datasets import DatasetError, load_dataset
from app.finetune.settings import LoraSettings, preset
from app.machine.profile import Machine


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", "utf-8")
    return path


def _chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_openai_jsonl_detected_deduplicated_and_split(tmp_path: Path) -> None:
    rows = [_chat(f"q{i}", f"a{i}") for i in range(20)] + [_chat("q3", "a3")]
    ds = load_dataset(_jsonl(tmp_path / "data.jsonl", rows))
    assert ds.format == "openai"
    assert ds.stats.records == 20 and ds.stats.duplicates_dropped == 1
    train, val = ds.split(0.1, seed=1)
    assert len(val) == 2 and len(train) == 18
    assert not {e.key() for e in train} & {e.key() for e in val}
    assert ds.split(0.1, seed=1) == (train, val)  # seeded, so a resumed run agrees


def test_sharegpt_alpaca_and_text_formats(tmp_path: Path) -> None:
    share = load_dataset(_jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"conversations": [{"from": "system", "value": "be brief"},
                           {"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}]))
    assert share.format == "sharegpt"
    assert share.examples[1].messages[0] == {"role": "system", "content": "be brief"}
    alpaca_list = tmp_path / "a.json"
    alpaca_list.write_text(json.dumps([
        {"instruction": "Add", "input": "1+1", "output": "2"},
        {"instruction": "Greet", "output": "Hello"}], indent=2), "utf-8")
    alpaca = load_dataset(alpaca_list)
    assert alpaca.format == "alpaca"
    assert alpaca.examples[0].messages[0]["content"] == "Add\n\n1+1"
    text = tmp_path / "notes.txt"
    text.write_text("First paragraph.\nStill first.\n\nSecond one.\n", "utf-8")
    plain = load_dataset(text)
    assert plain.format == "text" and [e.line for e in plain.examples] == [1, 4]
    assert plain.stats.approx_tokens > 0


def test_broken_json_and_missing_fields_name_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join([
        json.dumps(_chat("ok", "fine")),
        '{"messages": [',
        json.dumps({"prompt": "no messages key"}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
        json.dumps({"messages": [{"content": "no role"}, {"role": "assistant",
                                                          "content": "a"}]}),
        json.dumps({"messages": [{"role": "bot", "content": "x"}]}),
    ]) + "\n", "utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    err = info.value
    assert err.usable == 1
    text = str(err)
    assert "Line 2 of data.jsonl: not valid JSON" in text
    assert "Line 3 of data.jsonl: 'messages' is missing" in text
    assert "Line 4 of data.jsonl: no assistant message" in text
    assert "Line 5 of data.jsonl: message 1 has no 'role'" in text
    assert "Line 6 of data.jsonl: message 1 has role 'bot'" in text


def test_alpaca_json_list_points_at_the_item_line(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"},
                                {"instruction": "c"}], indent=2), "utf-8")
    with pytest.raises(DatasetError, match=r"Line 6 of alpaca.json: 'output' is missing"):
        load_dataset(path)


def test_empty_binary_and_non_utf8_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", "utf-8")
    with pytest.raises(DatasetError, match="empty.jsonl is empty"):
        load_dataset(empty)
    binary = tmp_path / "weights.jsonl"
    binary.write_bytes(b"PK\x03\x04\x00\x00\x01" * 50)
    with pytest.raises(DatasetError, match="binary file"):
        load_dataset(binary)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(_chat("a", "b")).encode() + b"\n{\"x\": \"caf\xe9\"}\n")
    with pytest.raises(DatasetError, match="Line 2 of latin.jsonl: not valid UTF-8"):
        load_dataset(latin)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing.jsonl")


def test_split_needs_two_records(tmp_path: Path) -> None:
    ds = load_dataset(_jsonl(tmp_path / "one.jsonl", [_chat("q", "a")]))
    with pytest.raises(ValueError, match="at least 2 records"):
        ds.split()


def test_settings_validate_and_presets_scale_with_data() -> None:
    with pytest.raises(ValueError, match="rank"):
        LoraSettings(rank=0)
    with pytest.raises(ValueError, match="learning rate"):
        LoraSettings(learning_rate=3)
    cpu = Machine(cpu_cores=2, memory_bytes=8 << 30)
    small, big = preset("balanced", 50, cpu), preset("balanced", 50_000, cpu)
    assert small.epochs > big.epochs
    assert preset("thorough", 50, cpu).rank > preset("quick", 50, cpu).rank
    assert LoraSettings().with_overrides(rank=4, epochs=None).rank == 4


# ---------------------------------------------------------- hostile files (issue 11 F16)

_OK = json.dumps({"messages": [{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "yo"}]})


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_deeply_nested_json_names_its_line(tmp_path: Path, suffix: str) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    path = tmp_path / f"deep{suffix}"
    if suffix == ".jsonl":
        path.write_text(f"{_OK}\n{deep}\n")
        where = "Line 2 of deep.jsonl"
    else:
        path.write_text(f"[\n{_OK},\n{deep}\n]\n")
        where = "of deep.json"
    with pytest.raises(DatasetError, match=f"{where}: .*nested too deeply"):
        load_dataset(path)


def test_size_caps_give_line_numbered_errors(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import app.finetune.dataset_records as records
    import app.finetune.datasets as ds

    monkeypatch.setattr(records, "MAX_MESSAGE_CHARS", 1000)
    long = json.dumps({"messages": [{"role": "user", "content": "x" * 1001},
                                    {"role": "assistant", "content": "yo"}]})
    path = tmp_path / "long.jsonl"
    path.write_text(f"{_OK}\n{long}\n")
    with pytest.raises(DatasetError, match="Line 2 of long.jsonl: message 1 is 1,001 "
                                           "characters long; the limit is 1,000"):
        load_dataset(path)

    monkeypatch.setattr(ds, "MAX_RECORDS", 3)
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join([_OK] * 4) + "\n")
    with pytest.raises(DatasetError, match="Line 4 of many.jsonl: more than 3 records"):
        load_dataset(path)

    monkeypatch.setattr(ds, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join([_OK] * 3) + "\n")
    with pytest.raises(DatasetError, match="big.jsonl is .* bytes; the limit is 100"):
        load_dataset(path)
