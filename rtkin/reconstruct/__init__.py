"""rtkin.reconstruct."""
