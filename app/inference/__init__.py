"""Inference: the client of the llama.cpp worker, its protocol, its kernels."""
