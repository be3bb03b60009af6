"""The command line, ``bigearth-sr``: the top of the import graph (nothing in the package imports it)."""
