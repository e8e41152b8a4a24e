"""The package version, in one place (read by the package root, saved weights and evaluation results)."""

__version__ = "0.1.0"
