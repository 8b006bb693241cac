"""Voice IVR and speech service."""

__version__ = "0.1.0"
