"""Side-by-side throughput and memory runs (run by hand; not part of the test suite)."""
