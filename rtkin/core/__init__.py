"""rtkin.core."""
