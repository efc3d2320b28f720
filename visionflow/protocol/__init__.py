"""protocol subsystem."""
