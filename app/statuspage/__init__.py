"""The status page: custom components and groups, heartbeats, incidents, maintenances, uptime."""
