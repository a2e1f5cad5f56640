"""Code that runs inside worker processes: llama.cpp inference, PyTorch + PEFT training,
merging, GGUF export and quantization. Started by the clients in ``app``; never imported
by the GUI process.
"""
