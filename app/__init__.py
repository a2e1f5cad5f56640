"""Hearth's core, free of Qt: the model library, conversations (SQLite), settings, hub
downloads, and the clients that drive the worker processes in ``backends``.

Nothing here imports PySide6, llama.cpp or torch (the import-linter contracts in
``pyproject.toml`` hold this), so the CLI and the tests use it without a screen.
"""
