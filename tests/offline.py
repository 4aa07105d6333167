"""Environment under which every download fails at once: all proxies point at a closed port."""

from __future__ import annotations

import os

DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there
OFFLINE = {key: DEAD_PROXY for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")} \
    | {"no_proxy": "", "NO_PROXY": ""}


def offline_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with downloads made impossible, ``CI`` and ``L0REPRO_NO_DOWNLOAD`` unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "L0REPRO_NO_DOWNLOAD")}
    return env | OFFLINE | extra
