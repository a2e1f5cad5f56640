"""Inside the inference worker: llama.cpp through llama-cpp-python."""
