"""Partner units: each built only from its own JSON contract and the kit, never our models."""
