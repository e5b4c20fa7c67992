"""Error events: logging them, listing them, reading one."""
