"""The package version, in one place (pyproject.toml reads it; the exporter writes it into files)."""

__version__ = "0.1.0"
