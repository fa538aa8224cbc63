"""rtkin.runtime."""
