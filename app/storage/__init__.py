"""Everything that speaks to MongoDB lives under here or in a domain's store module."""
