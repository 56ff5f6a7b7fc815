"""Pretraining ViLBERT: the objectives, the run, its dataset, held-out evaluation, where the text stream
starts, caption sampling."""
