"""Export: a trained LoRA -> GGUF adapter (or merged model) that llama.cpp loads, parity-checked."""
