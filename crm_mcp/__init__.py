"""crm-mcp: an MCP server for CRM integrations with a durable local sync engine.

Keep this module import-free: `crm-mcp serve` must reach the MCP handshake quickly.
"""

__version__ = "0.1.0"
