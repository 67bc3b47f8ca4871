"""RAG fine-tuning: dataset, LoRA fine-tune, GGUF export, evaluation, publishing."""
