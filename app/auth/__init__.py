"""Credentials: API keys scoped to one organization or admin, their store and their checks."""
