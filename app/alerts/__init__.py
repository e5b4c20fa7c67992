"""Alert rules and their delivery as signed webhooks."""
