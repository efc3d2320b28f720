"""mcp subsystem."""
