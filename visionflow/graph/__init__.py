"""graph subsystem."""
