"""The package version, in one place (read by pyproject.toml's build and by ``agegender --version``)."""

__version__ = "0.1.0"
