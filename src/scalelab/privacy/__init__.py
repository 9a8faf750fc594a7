"""scalelab.privacy."""
