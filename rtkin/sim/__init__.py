"""rtkin.sim."""
