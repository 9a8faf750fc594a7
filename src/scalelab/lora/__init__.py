"""scalelab.lora."""
