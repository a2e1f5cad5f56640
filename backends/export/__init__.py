"""From a trained adapter to a file: merge, GGUF export, quantize and check."""
