"""API: the FastAPI gateway over the catalogue, tags, time series and health of the stack."""
