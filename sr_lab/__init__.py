"""Training and judging the super-resolution networks, above the builder that runs them: DSen2's
training (``sr-train``), the evaluation of every upsampler under Wald's protocol (``sr-eval``),
what counts as a scene and as an unseen one, the protocol itself, quality metrics, crops, and
the two commands' flags. ``dataset_builder.sr`` holds only what a build runs."""
