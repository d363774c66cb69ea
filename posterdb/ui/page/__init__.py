"""The Streamlit page's sections (app.py composes them): one module per section, each with
`render(db, store, generation, info)`, plus `common` (store resource, cached views, renderers).
Nothing here touches the store except through `PosterDB`."""
