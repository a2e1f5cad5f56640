"""Models: the library of GGUF files, reading them, the memory they need, the hub."""
