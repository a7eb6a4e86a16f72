"""The package version, in a module of its own so that modules inside medimg never import the package root."""

__version__ = "0.1.0"
