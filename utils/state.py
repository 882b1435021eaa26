"""The per-user state folder: ``KIS_TRADER_STATE_DIR`` or platformdirs' user state path
(``~/.local/state/kis-trader`` on Linux). The one owner of that folder's location: it holds
the account leases (``leases/``, :mod:`core.lease`), the shared rate-limit files
(``ratelimit/``, :mod:`api.kis_http`) and the holiday cache."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "KIS_TRADER_STATE_DIR"
APP_NAME = "kis-trader"


def state_dir() -> Path:
    """The folder (not created here)."""
    env = os.environ.get(STATE_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_state_path

    return user_state_path(APP_NAME, appauthor=False)
