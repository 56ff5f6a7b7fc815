"""Reproducing the paper: published numbers, table cells as runs, the plan of a table, statistics and claims,
the notebook suite (`make reproduce`)."""
