"""Hub search, file listing and verified, resumable downloads against a local hub."""

from __future__ import annotations

import errno
import hashlib
import threading
import time
from pathlib import Path

import pytest

from app.models.download import (
    DiskFull,
    Download,
    DownloadCancelled,
    DownloadPaused,
    HashMismatch,
)
from app.models.hub import HubClient, HubError, quant_from_filename
from app.models.partial_download import pending_downloads
from tests.gguf_factory import write_tiny_gguf
from tests.hub_server import FakeHub

REPO = "someone/Tiny-Chat-GGUF"
FILE = "tiny-chat-Q4_K_M.gguf"


@pytest.fixture
def served(fake_hub: FakeHub, tmp_path: Path) -> tuple[FakeHub, bytes]:
    data = write_tiny_gguf(tmp_path / "src.gguf", pad_to=200_000).read_bytes()
    small = write_tiny_gguf(tmp_path / "small.gguf", seed=1).read_bytes()
    fake_hub.add_repo(REPO, {FILE: data, "tiny-chat-Q8_0.gguf": small,
                             "big-00001-of-00002.gguf": small},
                      extra_files={"README.md": b"# hi"})
    fake_hub.add_repo("other/Unrelated-GGUF", {"x-F16.gguf": small}, downloads=5)
    return fake_hub, data


def _file(hub: FakeHub, name: str = FILE):
    return HubClient(hub.url).pick_file(REPO, filename=name)


@pytest.mark.parametrize(("name", "quant"), [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"),
    ("gemma-2-2b-it-IQ3_XS.gguf", "IQ3_XS"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("Phi-3.5-mini-instruct-f16.gguf", "F16"),
    ("model-UD-Q4_K_XL.gguf", "Q4_K_XL"),
    ("model.gguf", None),
])
def test_quant_is_read_from_the_file_name(name: str, quant: str | None) -> None:
    assert quant_from_filename(name) == quant


def test_search_finds_gguf_repos_most_downloaded_first(served) -> None:
    hub, _ = served
    results = HubClient().search("gguf")  # endpoint from HF_ENDPOINT
    assert [r.repo for r in results] == [REPO, "other/Unrelated-GGUF"]
    assert results[0].downloads == 100
    assert ("GET", "/api/models", None) in hub.requests
    assert [r.repo for r in HubClient().search("unrelated")] == ["other/Unrelated-GGUF"]


def test_list_files_gives_quant_size_hash_and_skips_non_gguf(served) -> None:
    hub, data = served
    files = {f.filename: f for f in HubClient().list_files(REPO)}
    assert set(files) == {FILE, "tiny-chat-Q8_0.gguf", "big-00001-of-00002.gguf"}
    f = files[FILE]
    assert (f.quant, f.size, f.sha256) == ("Q4_K_M", len(data),
                                           hashlib.sha256(data).hexdigest())
    assert f.revision == "0123456789abcdef0123456789abcdef01234567"
    assert files["big-00001-of-00002.gguf"].is_split


def test_pick_file_by_quant_and_clear_errors(served) -> None:
    client = HubClient()
    assert client.pick_file(REPO, quant="q8_0").filename == "tiny-chat-Q8_0.gguf"
    assert client.pick_file(REPO).filename == FILE  # Q4_K_M is the default
    with pytest.raises(HubError, match="no Q2_K file; available: .*Q4_K_M"):
        client.pick_file(REPO, quant="Q2_K")
    with pytest.raises(HubError, match="no model repository 'nobody/none'"):
        client.list_files("nobody/none")


def test_gated_repo_needs_a_token(served, monkeypatch: pytest.MonkeyPatch) -> None:
    hub, data = served
    hub.add_repo("meta/Gated-GGUF", {"g-Q4_K_M.gguf": data}, gated=True)
    hub.require_token = "hf_secret"
    with pytest.raises(HubError, match="gated"):
        HubClient().list_files("meta/Gated-GGUF")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert HubClient().list_files("meta/Gated-GGUF")[0].quant == "Q4_K_M"


def test_gated_download_with_a_token(served, workspace, monkeypatch, caplog) -> None:
    hub, data = served
    hub.add_repo("meta/Gated-GGUF", {"g-Q4_K_M.gguf": data}, gated=True)
    hub.require_token = "hf_secret"
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    file = HubClient().pick_file("meta/Gated-GGUF")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubError, match="gated"):
        Download(workspace.home, workspace.library, file).run()
    assert pending_downloads(workspace.home) == []  # nothing to resume, nothing listed
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with caplog.at_level("DEBUG"):
        record = Download(workspace.home, workspace.library, file).run()
    assert record.path.read_bytes() == data
    assert "hf_secret" not in caplog.text


def test_download_verifies_moves_and_registers(served, workspace) -> None:
    hub, data = served
    seen = []
    record = Download(workspace.home, workspace.library, _file(hub), seen.append).run()
    assert record.source == "download"
    assert record.path.parent == workspace.home.models
    assert record.path.read_bytes() == data
    assert record.provenance.sha256 == hashlib.sha256(data).hexdigest()
    assert record.provenance.repo == REPO
    assert [r.name for r in workspace.library.list()] == [record.name]
    assert seen[-1].done == seen[-1].total == len(data)
    assert list(workspace.home.downloads.iterdir()) == []


def test_dropped_connection_resumes_with_range(served, workspace) -> None:
    hub, data = served
    hub.drop_after = 64 * 1024
    record = Download(workspace.home, workspace.library, _file(hub), chunk_size=8192).run()
    ranges = hub.range_requests()
    assert len(ranges) == 1 and ranges[0].startswith("bytes=")
    assert 0 < int(ranges[0].removeprefix("bytes=").rstrip("-")) < len(data)
    assert hashlib.sha256(record.path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_pause_then_resume_in_a_new_session(served, workspace) -> None:
    hub, data = served
    hub.throttle = 0.001
    job: Download

    def pause_midway(progress) -> None:
        if progress.done >= 50_000:
            job.pause()

    job = Download(workspace.home, workspace.library, _file(hub), pause_midway,
                   chunk_size=8192, progress_interval=0)
    with pytest.raises(DownloadPaused):
        job.run()
    kept = job.partial_bytes
    assert 50_000 <= kept < len(data)
    assert workspace.library.list() == []  # a partial file is never listed
    [pending] = pending_downloads(workspace.home)
    assert (pending.repo, pending.filename, pending.done) == (REPO, FILE, kept)

    # "after the app was closed": a fresh Download knows only the sidecar on disk
    fresh = Download(workspace.home, workspace.library, _file(hub))
    record = fresh.run()
    assert hub.range_requests() == [f"bytes={kept}-"]
    assert record.path.read_bytes() == data
    assert pending_downloads(workspace.home) == []


def test_a_server_that_ignores_range_restarts_cleanly(served, workspace) -> None:
    hub, data = served
    hub.drop_after = 64 * 1024
    hub.ignore_range = True
    record = Download(workspace.home, workspace.library, _file(hub)).run()
    assert hub.range_requests()  # it asked to resume, the server sent everything again
    assert record.path.read_bytes() == data


def test_the_same_file_is_not_installed_twice(served, workspace) -> None:
    hub, _ = served
    first = Download(workspace.home, workspace.library, _file(hub)).run()
    with pytest.raises(HubError, match=f"already installed as {first.name}"):
        Download(workspace.home, workspace.library, _file(hub)).run()
    assert len(workspace.library.list()) == 1


def test_hash_mismatch_deletes_partial_and_registers_nothing(served, workspace) -> None:
    hub, _ = served
    hub.corrupt = True
    with pytest.raises(HashMismatch, match="corrupt.*nothing was installed"):
        Download(workspace.home, workspace.library, _file(hub)).run()
    assert workspace.library.list() == []
    assert list(workspace.home.downloads.iterdir()) == []
    assert list(workspace.home.models.iterdir()) == []


def test_cancel_leaves_nothing_behind(served, workspace) -> None:
    hub, _ = served
    hub.throttle = 0.001
    job: Download

    def cancel_midway(progress) -> None:
        if progress.done >= 30_000:
            job.cancel()

    job = Download(workspace.home, workspace.library, _file(hub), cancel_midway,
                   chunk_size=8192, progress_interval=0)
    with pytest.raises(DownloadCancelled):
        job.run()
    assert list(workspace.home.downloads.iterdir()) == []
    assert list(workspace.home.models.iterdir()) == []
    assert workspace.library.list() == []


def test_full_disk_while_writing_is_a_clear_error(served, workspace, monkeypatch) -> None:
    hub, _ = served
    real_open = Path.open

    class FullFile:
        def __init__(self, fh) -> None:
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return self.fh.fileno()

    def fake_open(self, mode="r", *args, **kwargs):
        fh = real_open(self, mode, *args, **kwargs)
        return FullFile(fh) if self.suffix == ".part" and "a" in mode else fh

    monkeypatch.setattr(Path, "open", fake_open)
    with pytest.raises(DiskFull, match="The disk is full: .* Free some space"):
        Download(workspace.home, workspace.library, _file(hub)).run()
    assert workspace.library.list() == []
    assert list(workspace.home.models.iterdir()) == []


def test_not_enough_space_is_refused_before_starting(served, workspace, monkeypatch) -> None:
    hub, _ = served
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    with pytest.raises(DiskFull, match=r"Not enough disk space for .*: needs .*, 1000 bytes free"):
        Download(workspace.home, workspace.library, _file(hub)).run()
    assert hub.range_requests() == [] and not any(m == "GET" and p.startswith("/cdn")
                                                  for m, p, _ in hub.requests)


def test_unverifiable_or_split_files_are_refused(served, workspace) -> None:
    hub, _ = served
    split = HubClient().pick_file(REPO, filename="big-00001-of-00002.gguf")
    with pytest.raises(HubError, match="split"):
        Download(workspace.home, workspace.library, split)
    split.split_total = None
    split.sha256 = None
    with pytest.raises(HubError, match="no SHA-256"):
        Download(workspace.home, workspace.library, split)


def test_describe_file_reads_the_shape_from_a_range_request(served) -> None:
    hub, _ = served
    f = _file(hub)
    shape = HubClient().describe_file(f, prefix_bytes=4096)
    assert shape.architecture == "llama"
    assert (shape.n_layers, shape.n_head, shape.n_head_kv, shape.n_embd) == (
        2, 2, 1, 16)
    assert shape.context_length == 256 and shape.file_size == f.size
    assert hub.range_requests() == ["bytes=0-4095"]


def test_two_downloads_of_one_file_cannot_interleave(served, workspace) -> None:
    hub, data = served
    hub.throttle = 0.005
    first = Download(workspace.home, workspace.library, _file(hub), progress_interval=0)
    started = threading.Event()
    first.progress = lambda prog: started.set()
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(first.run()))
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(HubError, match="already being downloaded"):
            Download(workspace.home, workspace.library, _file(hub)).run()
    finally:
        hub.throttle = 0
        thread.join(20)
    assert outcome and outcome[0].path.read_bytes() == data
    assert list(workspace.home.downloads.iterdir()) == []


def test_the_fake_hub_speaks_huggingface_hubs_own_protocol(served, tmp_path) -> None:
    """huggingface_hub's own metadata call and downloader accept the local hub, so the
    tests above exercise the same routes and headers as the real one."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    hub, data = served
    meta = get_hf_file_metadata(hf_hub_url(REPO, FILE, endpoint=hub.url))
    assert meta.etag == hashlib.sha256(data).hexdigest() and meta.size == len(data)
    assert meta.commit_hash == "0123456789abcdef0123456789abcdef01234567"
    path = hf_hub_download(REPO, FILE, cache_dir=tmp_path / "hf-cache", endpoint=hub.url)
    assert Path(path).read_bytes() == data


def _run_in_thread(job: Download, seconds: float) -> list[object]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(job.run())
        except Exception as exc:  # the test looks at what came out
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        job.cancel()  # the old loop never ended by itself; stop it for the next test
        thread.join(30)
        outcome.insert(0, "still running")
    return outcome


@pytest.mark.parametrize("ignore_range", [True, False])
def test_a_server_that_ends_every_transfer_early_is_given_up_on(served, workspace,
                                                                ignore_range: bool) -> None:
    """Issue 11 F4: a clean 200 shorter than announced (and, worse, with Range ignored)
    sent the download into an endless loop; it now gives up with a clear message."""
    hub, _ = served
    hub.short_body = 50_000
    hub.ignore_range = ignore_range
    job = Download(workspace.home, workspace.library, _file(hub))
    outcome = _run_in_thread(job, 30)
    assert len(outcome) == 1 and isinstance(outcome[0], HubError), outcome
    assert "keeps ending the transfer early" in str(outcome[0])
    transfers = [r for r in hub.requests if r[0] == "GET" and r[1].startswith("/cdn/")]
    assert 2 <= len(transfers) <= 8
    assert workspace.library.list() == []


def test_cancel_is_seen_between_responses_that_bring_no_bytes(served, workspace) -> None:
    """Issue 11 F4: cancel was checked only per chunk, so a server sending empty bodies
    could not be cancelled."""
    hub, _ = served
    hub.short_body = 0
    hub.ignore_range = True
    job = Download(workspace.home, workspace.library, _file(hub))
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(job.run())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not hub.range_requests() and not any(p.startswith("/cdn/") for _, p, _ in
                                               hub.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    job.cancel()
    thread.join(2)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DownloadCancelled), outcome
    assert list(workspace.home.downloads.iterdir()) == []


def test_two_downloads_of_same_named_files_get_their_own_targets(served, workspace) -> None:
    """Issue 11 F2, for downloads: two repositories' ``model-Q4_K_M.gguf`` finishing
    together picked one target name (checked with exists(), then renamed over)."""
    hub, _ = served
    first = Download(workspace.home, workspace.library, _file(hub))
    second = Download(workspace.home, workspace.library, _file(hub))
    a, b = first._target_path(), second._target_path()
    assert a != b and a.exists() and b.exists()
