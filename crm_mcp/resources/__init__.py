"""crm_mcp.resources"""
