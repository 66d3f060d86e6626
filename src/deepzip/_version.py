"""The version, once: pyproject.toml reads it from here, and so does every file deepzip writes."""
__version__ = "0.1.0"
