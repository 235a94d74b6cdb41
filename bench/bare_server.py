"""The baseline: a bare MCP server on the same SDK with one trivial tool (stdio).

The tool is async and returns a small dict, so it has an output schema and structured content
like every crm-mcp tool: a client that validates results against the schema does so here too.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
async def ping() -> dict[str, str]:
    """Answer that the server is up."""
    return {"status": "ok", "reply": "pong"}


if __name__ == "__main__":
    server.run()
