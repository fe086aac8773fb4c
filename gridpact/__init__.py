"""gridpact: neighbourhood energy trading from the smart meters households already have."""

__version__ = "0.1.0"
