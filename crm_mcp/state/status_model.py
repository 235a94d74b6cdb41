"""TEMPORARY shim; replaced by the light pydantic models once status.py is split."""

from crm_mcp.state.status import SyncStatus

__all__ = ["SyncStatus"]
