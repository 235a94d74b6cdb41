"""crm_mcp.sync"""
