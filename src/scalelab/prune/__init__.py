"""scalelab.prune."""
