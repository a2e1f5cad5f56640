"""A live adapter is applied only on the weights it was taught on (finding S8 of issue 24).

The review's probe (probes/base_swap.py): a taught version kept as an adapter, its base
removed, and another file imported under the base's name, which takes the same path;
the load plan (what the chat and ``hearth serve`` load) applied the adapter to it. And a
base registered where it lies (the starter, a linked file) replaced in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.models.library import LibraryError
from app.models.live import plan_load
from app.models.provenance import Provenance
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bases")
    adapter = folder / "adapter.gguf"
    adapter.write_bytes(b"GGUF-adapter-stand-in")  # plan_load only checks it is there
    # Two bases of one shape and size, other weights: only their bytes tell them apart.
    return {"base": write_tiny_gguf(folder / "base.gguf", seed=0),
            "other": write_tiny_gguf(folder / "other.gguf", seed=1), "adapter": adapter}


def _taught(ws: Workspace, base_name: str, adapter: Path) -> str:
    base = ws.library.get(base_name)
    return ws.library.register_adapter(adapter, base, f"{base_name}-taught-1", Provenance(
        base_model=base_name, base_path=str(base.path), adapter_gguf=str(adapter),
        run_id="r1")).name


def test_another_file_under_the_bases_name_and_path_is_refused(
        workspace: Workspace, files: dict[str, Path]) -> None:
    lib = workspace.library
    base = lib.import_file(files["base"], "base")
    taught = _taught(workspace, "base", files["adapter"])
    plan = plan_load(lib.get(taught), lib, None)
    assert plan.path == base.path and plan.adapter == str(files["adapter"])
    lib.remove("base")
    new = lib.import_file(files["other"], "base")
    assert new.path == base.path  # the same name and path, other weights
    with pytest.raises(LibraryError, match="no longer in the library as it was trained on"):
        plan_load(lib.get(taught), lib, None)
    lib.remove("base")
    again = lib.import_file(files["base"], "base")  # the same weights back: fine again
    assert plan_load(lib.get(taught), lib, None).adapter == str(files["adapter"])
    assert again.path == base.path


def test_a_base_replaced_in_place_is_refused(workspace: Workspace, files: dict[str, Path],
                                             tmp_path: Path) -> None:
    """A base registered where it lies (the starter is: a package upgrade replaces it)."""
    lib = workspace.library
    lying = tmp_path / "site-packages" / "starter.gguf"
    lying.parent.mkdir()
    shutil.copy(files["base"], lying)
    lib.register(lying, "starter", source="linked")
    taught = _taught(workspace, "starter", files["adapter"])
    assert plan_load(lib.get(taught), lib, None).adapter is not None
    shutil.copy(files["base"], tmp_path / "copy.gguf")  # reinstalled, same bytes: new inode
    (tmp_path / "copy.gguf").replace(lying)
    assert plan_load(lib.get(taught), lib, None).adapter is not None
    shutil.copy(files["other"], lying)  # upgraded in place: other weights, same shapes
    with pytest.raises(LibraryError, match="as it was trained on"):
        plan_load(lib.get(taught), lib, None)
