"""Fetcher: downloads provider lightcurves and publishes their points, in chunks, to flashes.lightcurve.v2."""
