"""The PySide6 face of Hearth: windows, widgets and Qt adapters of ``app`` objects.

Nothing here imports llama.cpp or torch; slow work happens in worker processes driven
through ``app`` clients, whose events arrive here as queued Qt signals.
"""
