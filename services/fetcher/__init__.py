"""Fetcher: downloads provider lightcurves and publishes their points to flashes.lightcurve.v1."""
