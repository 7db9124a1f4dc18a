"""``taskstream mcp``: an MCP server for AI agents, on the official MCP Python SDK, that talks
to the ingest HTTP API with an API key, so scopes and tenants apply unchanged."""
