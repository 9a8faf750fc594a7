"""scalelab.theory."""
