"""rtkin.capture."""
