"""uploadsvc: presigned uploads to object storage, confirmed by the server."""

__version__ = "0.1.0"
