"""Inside the training worker: base model, data, the LoRA loop, dtype, gate."""
