"""rtkin.calibrate."""
