"""scalelab.nn."""
