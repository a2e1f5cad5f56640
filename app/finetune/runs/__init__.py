"""Fine-tuning runs, typed: one room for everything about a run's data.

- :mod:`~app.finetune.runs.status`: :class:`RunStatus` and the rule for which runs can
  be resumed (:func:`can_resume`).
- :mod:`~app.finetune.runs.records`: what ``run.json`` (:class:`RunSpec`), ``state.json``
  (:class:`RunState`) and ``summary.json`` / ``Finished`` (:class:`RunSummary`) hold.
  Their one JSON codec, tolerant of older folders, is :mod:`app.codec`.
- :mod:`~app.finetune.runs.folder`: :class:`RunFolder` (the files of one run),
  ``create_run``, ``list_runs``.
- :mod:`~app.finetune.runs.results`: a finished run's model in the library.
- :mod:`~app.finetune.runs.resume`: which run to offer for Resume after a restart.
- :mod:`~app.finetune.runs.delete`: deleting a run with everything it produced.

How many steps a run takes is :func:`app.finetune.plan.total_steps`.
"""
