"""`vilbert-lite bench TARGET`: throughput numbers written to reports/bench/*.json."""
