"""JupyterLab for readers: the notebooks are saved without outputs, the executed copies open read-only.

``make lab`` starts JupyterLab with :class:`ContentsManager`, which serves every notebook under
``results/executed/`` as not writable. JupyterLab then never autosaves them (its save handler
skips a file that is not writable) and a Save is refused, so opening an executed copy (which
connects a kernel and updates the notebook's metadata in the browser) leaves the file as the
pipeline wrote it. The running user's file permissions cannot do this: git does not keep them,
and root may write any file.

Notebooks under ``notebooks/`` are saved as committed: without outputs, execution counts and the
reader's Python version (:func:`paperlib.notebooks.strip_outputs`, what the nbstripout git filter
removes). The outputs stay in the open notebook; the file on disk stays byte-identical to the
committed one, so ``git status`` stays clean (git's filter alone cannot promise that: a file whose
size changed counts as modified until it is staged again).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web

from .notebooks import strip_outputs

#: Paths (relative to the server's root, ``/``-separated) served read-only.
READ_ONLY_GLOBS = ["results/executed/*", "results/executed/*/*"]
#: Notebooks saved without their outputs.
STRIPPED_GLOBS = ["notebooks/*.ipynb"]


class ContentsManager(AsyncLargeFileManager):
    """JupyterLab's default contents manager: :attr:`read_only_globs` served read-only, :attr:`stripped_globs`
    saved without outputs."""

    read_only_globs: list[str] = READ_ONLY_GLOBS
    stripped_globs: list[str] = STRIPPED_GLOBS

    def is_read_only(self, path: str) -> bool:
        path = path.strip("/")
        return any(fnmatch.fnmatchcase(path, g) for g in self.read_only_globs)

    async def get(self, path: str, content: bool = True, type: str | None = None, format: str | None = None,
                  **kwargs: Any) -> dict[str, Any]:
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if model.get("type") != "directory" and self.is_read_only(path):
            model["writable"] = False
        return model

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        if self.is_read_only(path):
            raise web.HTTPError(403, f"{path} is an executed copy written by `python -m paperlib.pipeline` and "
                                     "opens read-only; run the notebook under notebooks/ instead")
        if model.get("type") == "notebook" and isinstance(model.get("content"), dict) and any(
                fnmatch.fnmatchcase(path.strip("/"), g) for g in self.stripped_globs):
            model = {**model, "content": strip_outputs(model["content"])}
        return await super().save(model, path)
