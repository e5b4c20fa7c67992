"""Error-tracking and live-status GraphQL API server."""
