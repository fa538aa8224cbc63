"""rtkin.io."""
