"""The inventory unit."""
