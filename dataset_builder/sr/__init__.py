"""DSen2 super-resolution (Lanaras et al. 2018) in PyTorch, as a build runs it: the networks,
their weights (bundle, Keras converter, the shipped files), tiled inference (the ``dsen2``
upsampler), the guard and consistency step, and the detail measure. Training and evaluation live
above the builder, in ``sr_lab``."""
