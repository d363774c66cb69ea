"""posterdb: an embedding store with a similarity-augmented genre classifier for movie posters."""
__version__ = "0.1.0"
