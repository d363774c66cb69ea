"""Keeping a store sound: the consistency check of DuckDB, FAISS files and image copies."""
