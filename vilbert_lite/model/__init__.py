"""The ViLBERT model: config, attention, the two-stream encoder (vilbert), heads, the official checkpoint
layout, the single-stream baseline. Imports nothing else of the package (errors aside)."""
