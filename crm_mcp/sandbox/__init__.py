"""crm_mcp.sandbox"""
