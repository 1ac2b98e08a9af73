"""Studies: quality and science, every method scored the same way against real or simulated references."""
