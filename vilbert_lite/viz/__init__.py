"""Pictures and tables for the notebooks: attention views and the explorer, pointing, visual tokens, the
pretraining / tasks / ViLT figures."""
