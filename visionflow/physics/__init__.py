"""physics subsystem."""
