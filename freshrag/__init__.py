"""freshrag: keep a retrieval index true to folders and tables that keep changing."""

__version__ = "0.1.0"
