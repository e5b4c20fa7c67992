"""Projects: where SDK events go (numeric ids, as Sentry SDKs expect), and their DSN keys."""
