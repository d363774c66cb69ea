"""The store's own settings (the `meta` table, key → text): what a store remembers between
commands, e.g. its film catalogue or the page's login. `posterdb.settings` merges them with the
environment and the command line; nothing else reads them."""
from __future__ import annotations

RESERVED = frozenset({"generation"})   # the write counter lives in `meta` too (connection.py)


class SettingQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    @staticmethod
    def store_settings(con) -> dict[str, str]:
        """Every saved setting, key → value."""
        return {str(k): str(v) for k, v in
                con.execute("SELECT key, value FROM meta WHERE value IS NOT NULL").fetchall()
                if k not in RESERVED}

    @staticmethod
    def set_store_setting(con, key: str, value: str | None) -> None:
        """Save (or, with None, forget) one setting."""
        if key in RESERVED:
            raise ValueError(f"{key!r} is not a setting")
        con.execute("DELETE FROM meta WHERE key = ?", [key])
        if value is not None:
            con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [key, str(value)])
