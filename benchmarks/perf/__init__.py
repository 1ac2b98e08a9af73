"""Timings: seconds, throughput and memory of the library's commands and steps."""
