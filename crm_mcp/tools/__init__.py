"""crm_mcp.tools"""
