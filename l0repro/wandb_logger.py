"""wandb curves that never stop training: every failure warns and falls back to local records."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        auth = netrc.netrc().authenticators("api.wandb.ai")
        return bool(auth and auth[2])
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger:
    """Thin, fail-soft wrapper around one wandb run.

    ``mode`` is ``online``, ``offline`` or ``disabled``. Online without an API key, or an
    online ``init`` that fails (no network), warns and continues offline; any later
    error warns once and disables logging. The local run record is unaffected.
    """

    def __init__(self, mode: str, project: str, entity: str | None, run_dir: Path,
                 config: dict[str, Any], name: str, group: str, run_id: str | None = None,
                 init_timeout: float = 60.0) -> None:
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"logger.wandb.mode must be online, offline or disabled, got {mode!r}")
        self.run = None
        self.run_id = run_id
        if mode == "disabled":
            return
        if mode == "online" and not _has_api_key():
            warnings.warn("wandb online mode but no API key (WANDB_API_KEY or netrc): logging "
                          "offline instead; upload later with `wandb sync`", stacklevel=2)
            mode = "offline"
        for attempt in (mode, "offline") if mode == "online" else (mode,):
            try:
                self.run = self._init(attempt, project, entity, run_dir, config, name, group,
                                      run_id, init_timeout)
                self.run_id = self.run.id
                return
            except Exception as e:  # wandb raises many types; none may stop training
                warnings.warn(f"wandb init ({attempt}) failed: {e}; "
                              + ("trying offline" if attempt == "online" and mode == "online"
                                 else "continuing without wandb (local records are kept)"),
                              stacklevel=2)

    @staticmethod
    def _init(mode, project, entity, run_dir, config, name, group, run_id, init_timeout):
        import wandb

        return wandb.init(
            mode=mode, project=project, entity=entity, dir=str(run_dir), config=config,
            name=name, group=group, id=run_id, resume="allow" if run_id else None,
            settings=wandb.Settings(init_timeout=init_timeout, console="off",
                                    silent=True, x_disable_stats=True),
        )

    @property
    def active(self) -> bool:
        return self.run is not None

    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:
            warnings.warn(f"wandb {what} failed: {e}; continuing without wandb", stacklevel=3)
            self.run = None

    def log(self, row: dict[str, Any], step: int) -> None:
        self._guard("log", lambda: self.run.log(
            {k: v for k, v in row.items() if isinstance(v, (int, float))}, step=step))

    def summary(self, summary: dict[str, Any]) -> None:
        self._guard("summary", lambda: self.run.summary.update(summary))

    def finish(self, exit_code: int = 0) -> None:
        self._guard("finish", lambda: self.run.finish(exit_code=exit_code))
        self.run = None
