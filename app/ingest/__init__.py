"""Sentry SDK ingestion: envelopes and store bodies in, error events out (no web framework here)."""
