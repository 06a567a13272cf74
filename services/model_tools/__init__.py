"""Model utilities (spec §5.5-5.8): LLaMA conversion, half precision, delta weights, downloads."""
