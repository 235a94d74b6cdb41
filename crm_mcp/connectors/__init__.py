"""crm_mcp.connectors"""
