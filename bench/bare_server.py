"""The baseline: a bare MCP server on the same SDK with one trivial tool (stdio)."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def ping() -> str:
    """Return pong."""
    return "pong"


if __name__ == "__main__":
    server.run()
