"""Model utilities: LLaMA conversion, half precision, delta weights, CAMEL model downloads, GGUF
export."""
