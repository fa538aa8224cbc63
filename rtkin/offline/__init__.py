"""rtkin.offline."""
