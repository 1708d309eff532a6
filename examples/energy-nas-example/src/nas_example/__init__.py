"""Example energy-nas plugin: the `resmlp` family and the `stripes` dataset.

Nothing here is imported by energy-nas until a command needs one of these names; the entry
points in pyproject.toml tell it where they are.
"""
