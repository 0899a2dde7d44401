"""The fraud unit."""
