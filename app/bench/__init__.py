"""The ``hearth bench`` commands: a person can measure Hearth on their own machine.

Where benchmarks live (one rule): a benchmark that ``hearth bench`` runs is product code,
in two halves split by the import rules: here the command's Qt-free, torch-free side
(start the worker or the child, compare, summarize), and in :mod:`backends.bench` the
child processes that load llama.cpp or torch to measure (a baseline loop, the trainers).
A developer's measurement that no person runs (it needs the tests' tiny models, or
measures one internal function) lives in ``tests/benchmarks/``. Each prints its figure
as a ratio against a baseline measured in the same run; ``docs/development.md`` says how
to write one, ``BENCHMARKS.md`` keeps the results with their commands.
"""
