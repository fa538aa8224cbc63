"""rtkin.kinematics."""
