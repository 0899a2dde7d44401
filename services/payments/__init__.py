"""The payments unit."""
