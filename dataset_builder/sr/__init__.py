"""DSen2 super-resolution (Lanaras et al. 2018) in PyTorch, as a build runs it: the networks,
their weights (bundle, Keras converter, the shipped files), tiled inference (the ``dsen2``
upsampler), the guard and consistency step, and the detail measure. Training and evaluation live
above the builder, in ``sr_lab``."""

# The networks shipped with the package, by name (``--sr-model``, ``upsample.get("dsen2", model=...)``):
# blocks x features of both. Their files are ``weights.MODELS``; named here, where nothing imports
# torch, so that the command lines offer them without importing it.
SIZES = {"default": (6, 32), "paper": (6, 128)}
ROLES = {"default": "the fast one", "paper": "the published DSen2's size, several times slower"}


def describe_models() -> str:
    """The shipped models in a help text's words: 'default' (6 x 32, the fast one) or ..."""
    return " or ".join(f"'{m}' ({b} x {f}, {ROLES[m]})" for m, (b, f) in SIZES.items())
