"""DSen2 super-resolution (Lanaras et al. 2018) in PyTorch: networks, weights, Wald's protocol,
training, tiled inference (the ``dsen2`` upsampler) and quality metrics."""
