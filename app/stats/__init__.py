"""Error statistics: counts of events per time bucket, optionally broken down by a dimension."""
