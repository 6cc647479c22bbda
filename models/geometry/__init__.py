"""models/geometry."""
