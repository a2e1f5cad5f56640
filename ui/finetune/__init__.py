"""The Fine-tune tab: set-up, training view, run history, compare."""
