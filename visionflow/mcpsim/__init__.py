"""``visionflow mcp-sim``: a claude-flow-like MCP server with a living swarm, for demos and tests.

A program of its own next to the service: it shares only the line framing with the MCP client
(``visionflow.mcp.framing``) and nothing imports it but the CLI and the tests.

- ``model.py``: the swarm (sans-IO, seeded);
- ``dialect.py``: claude-flow 2.x and 3.x answers about it (sans-IO);
- ``server.py``: the TCP and stdio shells, with fault injection.
"""
