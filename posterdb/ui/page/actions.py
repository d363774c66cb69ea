"""Every write the page makes goes through `perform` (one place to gate them, e.g. a login)."""
from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from posterdb.core.errors import PosterDBError
from posterdb.ui import helpers as ui

log = logging.getLogger("posterdb.app")


def perform(action: Callable[[], str]) -> bool:
    """Run one write; its message is shown on the next run (or one readable error line)."""
    try:
        st.session_state["flash"] = action()
        return True
    except Exception as e:  # noqa: BLE001 - shown on the page, never as a traceback
        if not isinstance(e, (PosterDBError, ValueError)):
            log.exception("page write failed")
        st.session_state["flash_error"] = ui.friendly_error(e)
        return False
