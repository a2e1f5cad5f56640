"""The measuring halves of the ``hearth bench`` commands: child processes that load
llama.cpp or torch (which the app never does in-process); each prints one JSON result
for its command in :mod:`app.bench` to compare and summarize."""
