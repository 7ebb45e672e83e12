"""Import the user's app module, fresh from source every time."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compile from source and never read or write ``__pycache__``.

    Python trusts a cached ``.pyc`` whose recorded source size and mtime (in
    whole seconds) match, so two saves of the same size within one second
    would run the previous version. App files are small; compiling them
    again costs little.
    """

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        source = self.get_data(path)
        return compile(source, path, "exec", dont_inherit=True)


class AppSourceFinder(importlib.abc.MetaPathFinder):
    """Give every module under the app's folder a ``SourceOnlyLoader``."""

    def __init__(self, root: Path) -> None:
        self.root = str(root) + os.sep

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        if spec.origin is None or not spec.origin.startswith(self.root):
            return spec
        spec.loader = SourceOnlyLoader(fullname, spec.origin)
        return spec


class AppLoadError(Exception):
    """The app module failed to import; carries what the gateway shows."""

    def __init__(self, summary: str, formatted: str, filename: str | None, lineno: int | None):
        super().__init__(summary)
        self.summary = summary
        self.formatted = formatted
        self.filename = filename
        self.lineno = lineno


def format_user_traceback(exc: BaseException) -> str:
    """Format ``exc`` without the frames of ampt_sandbox itself."""
    tb_exc = traceback.TracebackException.from_exception(exc)
    _strip_package_frames(tb_exc)
    return "".join(tb_exc.format())


def _strip_package_frames(tb_exc: traceback.TracebackException) -> None:
    frames = [f for f in tb_exc.stack if not f.filename.startswith(PACKAGE_DIR)]
    if frames:
        tb_exc.stack = traceback.StackSummary.from_list(frames)
    if tb_exc.__cause__ is not None:
        _strip_package_frames(tb_exc.__cause__)
    if tb_exc.__context__ is not None:
        _strip_package_frames(tb_exc.__context__)


def _error_location(exc: BaseException, app_root: str) -> tuple[str | None, int | None]:
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno
    location: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(app_root):
            location = (frame.filename, frame.lineno)
    return location


def load_app(app_path: Path) -> ModuleType:
    """Import ``app_path`` as the module named by its file stem.

    Raises:
        AppLoadError: the file is missing or raised while importing.
    """
    app_path = app_path.resolve()
    root = app_path.parent
    sys.path.insert(0, str(root))
    sys.meta_path.insert(0, AppSourceFinder(root))
    sys.dont_write_bytecode = True

    name = app_path.stem
    try:
        spec = importlib.util.spec_from_file_location(
            name, app_path, loader=SourceOnlyLoader(name, str(app_path))
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - the user's import may raise anything
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        filename, lineno = _error_location(exc, str(root) + os.sep)
        where = f"{filename}:{lineno}: " if filename else ""
        summary = f"{where}{type(exc).__name__}: {exc}"
        raise AppLoadError(summary, format_user_traceback(exc), filename, lineno) from exc
    return module
