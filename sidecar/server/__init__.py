"""Listeners: the proxy's HTTP surface and the admin endpoints."""
