"""12-in-1: the multi-task data sets and the round-robin / Dynamic Stop-and-Go training."""
