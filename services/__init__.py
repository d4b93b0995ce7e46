"""The FLASHES stream services; each runs as its own process (`flashes run NAME`)."""
