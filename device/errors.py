"""Exceptions with one-line messages meant for users (the CLI prints them as they are)."""


class EdgeOCRError(Exception):
    """Base class: the message names the input and what was expected."""


class ImageError(EdgeOCRError):
    """An image file or frame could not be read or is not a usable image."""


class RegionError(EdgeOCRError):
    """A region (box or quad) is malformed or lies outside the image."""


class ModelError(EdgeOCRError):
    """A model file or its card is missing, malformed, or they do not match."""
