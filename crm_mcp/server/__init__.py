"""crm_mcp.server"""
