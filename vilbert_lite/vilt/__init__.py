"""ViLT: the single-stream model over patches or CNN grid cells, its visual inputs, its pretraining."""
