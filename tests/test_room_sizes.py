"""Rooms stay small enough to read: no product file over 450 lines and no function over 80,
unless its docstring says why it is long ("long because ...")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("app", "ui", "backends")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80
REASON = "long because"


def _product_files() -> list[Path]:
    return sorted(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py"))


def test_no_product_file_over_450_lines_without_a_reason() -> None:
    long = []
    for path in _product_files():
        text = path.read_text("utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_FILE_LINES and REASON not in doc:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, "split these rooms, or say in the module docstring why they are " \
        f"{REASON} ...:\n" + "\n".join(long)


def test_no_function_over_80_lines_without_a_reason() -> None:
    long = []
    for path in _product_files():
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if length > MAX_FUNCTION_LINES and REASON not in doc:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                f"{length} lines")
    assert not long, "split these functions, or say in the docstring why they are " \
        f"{REASON} ...:\n" + "\n".join(long)
