"""Operational status of the platform's services."""
