"""``hearth models search`` and ``hearth models pull`` run as a real process against a local hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gguf_factory import write_tiny_gguf
from tests.hub_server import FakeHub

ROOT = Path(__file__).resolve().parent.parent
REPO = "someone/Tiny-Chat-GGUF"


@pytest.fixture
def served(fake_hub: FakeHub, tmp_path: Path) -> tuple[FakeHub, bytes]:
    data = write_tiny_gguf(tmp_path / "a.gguf", pad_to=400_000).read_bytes()
    fake_hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": data,
                             "tiny-Q8_0.gguf": write_tiny_gguf(tmp_path / "b.gguf").read_bytes()})
    return fake_hub, data


def _env(tmp_path: Path, hub: FakeHub) -> dict[str, str]:
    return dict(os.environ, HEARTH_HOME=str(tmp_path / "home"), HF_ENDPOINT=hub.url,
                PYTHONPATH=str(ROOT))


def _hearth(tmp_path: Path, hub: FakeHub, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], cwd=ROOT, text=True,
                          capture_output=True, env=_env(tmp_path, hub), timeout=60)


def _downloaded(tmp_path: Path, hub: FakeHub) -> list[dict]:
    listed = json.loads(_hearth(tmp_path, hub, "models", "list", "--json").stdout)
    return [m for m in listed if m["source"] == "download"]


def test_search_json(served, tmp_path: Path) -> None:
    hub, _ = served
    done = _hearth(tmp_path, hub, "models", "search", "tiny", "--json")
    assert done.returncode == 0, done.stderr
    assert [r["repo"] for r in json.loads(done.stdout)] == [REPO]


def test_pull_installs_a_verified_model(served, tmp_path: Path) -> None:
    hub, data = served
    done = _hearth(tmp_path, hub, "models", "pull", REPO, "--quant", "Q4_K_M")
    assert done.returncode == 0, done.stderr
    assert "SHA-256 verified" in done.stdout
    assert "100%" in done.stderr  # the progress bar
    listed = _downloaded(tmp_path, hub)
    assert [m["provenance"]["repo"] for m in listed] == [REPO]
    assert Path(listed[0]["path"]).read_bytes() == data


def test_pull_interrupted_then_rerun_resumes(served, tmp_path: Path) -> None:
    hub, data = served
    hub.throttle = 0.05  # ~160 KB/s, so the first run is still going when interrupted
    # A shell without job control starts background jobs with SIGINT ignored, and the
    # child would inherit that; give it the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "models", "pull", REPO,
                             "--file", "tiny-Q4_K_M.gguf"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(tmp_path, hub),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    downloads = tmp_path / "home" / "downloads"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = list(downloads.glob("*.part")) if downloads.exists() else []
        if parts and parts[0].stat().st_size > 50_000:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err.lower()
    kept = next(downloads.glob("*.part")).stat().st_size
    assert 50_000 <= kept < len(data)

    hub.throttle = 0
    done = _hearth(tmp_path, hub, "models", "pull", REPO, "--file", "tiny-Q4_K_M.gguf")
    assert done.returncode == 0, done.stderr
    assert f"bytes={kept}-" in hub.range_requests()
    assert list(downloads.iterdir()) == []


def test_pull_hash_mismatch_exits_2_with_one_line(served, tmp_path: Path) -> None:
    hub, _ = served
    hub.corrupt = True
    done = _hearth(tmp_path, hub, "models", "pull", REPO)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hearth: tiny-Q4_K_M.gguf is corrupt")
    assert "Traceback" not in done.stderr
    assert _downloaded(tmp_path, hub) == []


def test_pull_without_disk_space_exits_2(served, tmp_path: Path) -> None:
    hub, data = served
    hub.add_repo("huge/Model-GGUF", {"huge-Q4_K_M.gguf": data},
                 claimed_sizes={"huge-Q4_K_M.gguf": 1 << 50})  # a petabyte
    done = _hearth(tmp_path, hub, "models", "pull", "huge/Model-GGUF")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("hearth: Not enough disk space for huge-Q4_K_M.gguf")
    assert "Traceback" not in done.stderr


def test_fit_reports_a_verdict_with_numbers(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "m.gguf")
    env = dict(os.environ, HEARTH_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "app.cli.main", "models"]
    subprocess.run([*run, "import", str(model), "--name", "tiny"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=60)
    done = subprocess.run([*run, "fit", "tiny", "--ctx", "256", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["level"] in ("green", "yellow", "red") and report["n_ctx"] == 256
    # 2 layers x 256 tokens x 1 KV head x (8 + 8: n_embd 16 / 2 heads) x 2 bytes
    assert report["kv_cache_bytes"] == 2 * 256 * 1 * 16 * 2
    assert report["typical_bytes"] > report["weights_bytes"] > 0


def test_search_shows_a_hostile_repository_name_without_its_escape_sequences(
        fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.add_repo("someone/tiny\x1b[2J\x1b]0;owned\x07-GGUF",
                      {"t-Q8_0.gguf": write_tiny_gguf(tmp_path / "t.gguf").read_bytes()})
    done = _hearth(tmp_path, fake_hub, "models", "search", "tiny")
    assert done.returncode == 0, done.stderr
    assert "someone/tiny[2J]0;owned-GGUF" in done.stdout
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout
