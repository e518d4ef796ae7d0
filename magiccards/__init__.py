"""deeplens-magiccards: train your own card recogniser and ship it to an edge camera."""
__version__ = "0.1.0"
