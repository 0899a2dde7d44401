"""FastShip GmbH's partner unit: next-day parcels in DE, AT and CH."""
