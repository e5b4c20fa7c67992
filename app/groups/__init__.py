"""Error groups: events with the same fingerprint, counted as they are logged."""
