"""posterdb: an embedding store with a similarity-augmented genre classifier for movie posters.

    from posterdb import PosterDB
    db = PosterDB.open("posterdb-store", model_dir="../shared/models")
"""
__version__ = "0.1.0"
__all__ = ["PosterDB", "__version__"]


def __getattr__(name: str):
    if name == "PosterDB":  # lazy: `import posterdb` stays cheap (no duckdb/faiss import)
        from posterdb.store import PosterDB

        return PosterDB
    raise AttributeError(f"module 'posterdb' has no attribute {name!r}")
