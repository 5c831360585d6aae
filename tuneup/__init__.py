"""tuneup: audit a Linux host for the limits that decide how many TCP connections it can hold."""

__version__ = "0.1.0"
