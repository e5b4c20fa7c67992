"""Persisted documents: Apollo's automatic persisted queries and trusted-document manifests."""
