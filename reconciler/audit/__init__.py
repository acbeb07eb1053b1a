"""The hash-chained audit history: the chain itself, its queries, and the scheduler's watch."""
