"""Logs, correlation ids, traces and metrics (docs/observability.md).

A leaf package: it imports nothing of crm-mcp but the error tree, so every layer may enter its
scopes. Importing the package imports none of its modules; `metrics` loads prometheus-client and
is imported lazily (only when a runtime's metrics are first used).
"""
