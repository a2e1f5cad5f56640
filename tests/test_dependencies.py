"""Every third-party package the code imports is declared in pyproject.toml (issue 11:
app/models/hub.py imported httpx2, which came only as huggingface_hub's dependency)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"app", "ui", "backends", "resources", "tests"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    return {_normal(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


def _imported(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    providers = importlib.metadata.packages_distributions()
    missing = []
    for folder in ("app", "ui", "backends"):
        for module, where in sorted(_imported(ROOT / folder).items()):
            if module in FIRST_PARTY or module in sys.stdlib_module_names:
                continue
            dists = {_normal(d) for d in providers.get(module, [module])}
            if not dists & declared:
                missing.append(f"{module} ({where.relative_to(ROOT)}; from "
                               f"{', '.join(sorted(dists))})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)
