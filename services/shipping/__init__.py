"""The shipping unit."""
