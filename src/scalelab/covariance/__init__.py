"""scalelab.covariance."""
