"""crm_mcp.state"""
