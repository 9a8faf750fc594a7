"""scalelab.diagnostics."""
