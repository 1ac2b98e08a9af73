"""mrsynth benchmarks: `python -m benchmarks [NAME ...]` (see RESULTS.md)."""
