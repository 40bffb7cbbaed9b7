"""newsletter: compose, personalise and send a weekly regional news digest."""

__version__ = "0.1.0"
