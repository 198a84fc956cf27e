"""MISATO-bench: datasets, masks and the `misato` command line.

Mask convention everywhere in this project: float masks in [0, 1] with 1 = hole (white, 255 in files).
"""

__version__ = "0.1.0"
