"""The notebooks' kernels: their environment and sockets, and the signals that interrupt a run.

The runner starts each kernel with ``PYTHONPATH`` leading
with this checkout, so a notebook imports this checkout's ``paperlib`` whatever environment runs
it; ``PAPERLIB_ROOT`` set to the project root; and ``PAPERLIB_QUIET=1`` and ``TQDM_DISABLE=1``, so
executed notebooks carry no progress bars (every progress bar of ``paperlib`` goes through
:class:`paperlib.progress.Progress`, off under ``PAPERLIB_QUIET``: ``tqdm.notebook`` ignores
``TQDM_DISABLE``, which only turns off plain-text bars). Executed notebooks go to
``results/executed/<profile>/`` with machine paths removed.

On POSIX systems the kernels listen on IPC (Unix domain) sockets
in the runner's temporary folder instead of TCP on localhost: nothing reaches them through the
network, and ipykernel's warning about unencrypted TCP has no cause to be printed.

"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from .. import paths

KERNEL = "python3"


class Interrupted(KeyboardInterrupt):
    """The runner received SIGINT, SIGTERM or SIGHUP."""


class _signals:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` while the runner works (restored
    after), and remember the signal in :attr:`received`.

    The notebook client runs the kernel in an event loop that may swallow the interrupt (a cell
    cancelled, the notebook "finished"); the runner therefore checks :attr:`received` after every
    notebook and stops as interrupted, whatever the client returned.
    """

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __enter__(self) -> "_signals":
        self.old = {}
        self.received: str | None = None

        def handler(signum: int, frame: Any) -> None:
            self.received = signal.Signals(signum).name
            raise Interrupted(self.received)

        for s in self.SIGNALS:
            try:
                self.old[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


class _kernel_env:
    """Environment of the notebooks' kernels (see the module docstring), restored after."""

    def __init__(self, progress_file: Path | None = None):
        self.progress_file = progress_file

    def __enter__(self) -> "_kernel_env":
        from .. import progress

        pythonpath = os.environ.get("PYTHONPATH", "")
        parts = [str(paths.CODE)] + [p for p in pythonpath.split(os.pathsep) if p and p != str(paths.CODE)]
        self.new = {"PYTHONPATH": os.pathsep.join(parts), "PAPERLIB_ROOT": str(paths.ROOT),
                    "PAPERLIB_QUIET": "1", "TQDM_DISABLE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                    progress.ENV: str(self.progress_file) if self.progress_file else None}
        self.old = {k: os.environ.get(k) for k in self.new}
        for k, v in self.new.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return self

    def __exit__(self, *exc: Any) -> None:
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_manager_class(folder: Path) -> type | None:
    """A kernel manager whose kernels listen on IPC sockets in ``folder`` (POSIX; None elsewhere:
    papermill's default, TCP on localhost)."""
    if os.name != "posix":
        return None
    from jupyter_client.manager import AsyncKernelManager  # nbclient's default manager

    class LocalSocketKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(folder / "kernel"))  # sockets kernel-1 ... kernel-5, removed at shutdown
            super().__init__(**kwargs)

    return LocalSocketKernelManager

