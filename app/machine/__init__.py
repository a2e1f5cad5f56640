"""This machine: its CPU and memory, the threads Hearth may use, and what the presets and
estimates know of it (the doctor that reports on it is :mod:`app.doctor`)."""
