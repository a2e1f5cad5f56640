"""The local OpenAI-compatible server (``hearth serve`` and the app\x27s switch)."""
