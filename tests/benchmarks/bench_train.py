"""The fine-tuning benchmark moved behind the CLI: ``hearth bench finetune``.

Its code is :mod:`backends.training.bench_finetune` (the CLI runs it as a child, since
the app never imports torch); ``python -m tests.benchmarks.bench_train`` still runs it,
with the same options.
"""

from backends.training.bench_finetune import main, make_dataset

__all__ = ["main", "make_dataset"]

if __name__ == "__main__":
    main()
