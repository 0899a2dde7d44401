"""The pricing unit."""
