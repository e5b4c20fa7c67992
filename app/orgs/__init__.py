"""Organizations: the tenants that own error events."""
