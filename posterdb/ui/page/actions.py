"""Every write the page makes goes through `perform`: the page's sign-in gate
(`access.may_write`, right before the write), then the write, then one line for the next run."""
from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from posterdb.core.errors import PosterDBError
from posterdb.ui import helpers as ui
from posterdb.ui.page import access

log = logging.getLogger("posterdb.app")


def perform(db, what: str, action: Callable[[], str], *, now: bool = False) -> bool:
    """Run one write if this session may (`what` names it in the refusal: "add posters");
    its message is shown on the next run, or one readable error line. `now`: called from the
    script run (a form), not from a widget callback."""
    if not access.may_write(db, what, now=now):
        return False
    try:
        st.session_state["flash"] = action()
        return True
    except Exception as e:  # noqa: BLE001 - shown on the page, never as a traceback
        if not isinstance(e, (PosterDBError, ValueError)):
            log.exception("page write failed")
        st.session_state["flash_error"] = ui.friendly_error(e)
        return False
