"""Unit services: one package per unit, each its own process (`mbs run unit NAME`)."""
