"""rtkin.clients."""
