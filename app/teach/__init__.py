"""Teach: corrections made in chat become a better model, never a worse one.

The room's parts, each named for what it does:

- ``run``: start a teach run from the corrections (data, gate inputs), keep or discard
  its result, describe its report;
- ``versions``: which taught version of each base the chat uses (roll back, switch);
- ``probes``: the questions the gate asks besides the corrections themselves —
  rewordings, neighbour questions of the same relation, the held-out general prompts —
  and the variations training sees (all derived by Hearth, never by the person);
- ``judge``: whether a free-running answer carries a correction, refuses, or departs in
  substance from the base model's answer (what the person would read, not tokens);
- ``estimate``: how long a Teach will take on this machine, measured on its past runs,
  and the running time that follows the clock;
- ``refusal``: whether a Teach would repeat the run the gate refused (window and CLI);
- ``reference``: where the base's reference answers are cached, and whether they are;
- ``continuing``: a new Teach continues the active version (rounds);
- ``records``: what crosses the worker's pipe and the files (the cases, the gate's
  report, the cached reference answers), as types with one codec;
- ``verdict``: the gate's counts, reasons and culprits from what the worker measured.

The PyTorch side (rehearsal, generation, the gate's measurements) runs in the training
worker: ``backends/training/teach_gate.py``.
"""
