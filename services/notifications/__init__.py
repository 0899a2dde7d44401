"""The notifications unit."""
