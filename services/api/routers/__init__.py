"""One router per concern of the API (a module-level `router` each); services/api/app.py includes them."""
