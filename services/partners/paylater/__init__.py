"""PayLater AB's partner unit: pay-later charges up to 5000 EUR."""
