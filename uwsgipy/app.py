"""Loading the WSGI application: ``wsgi-file``, ``module``, ``callable``.

Mirrors uWSGI's options of the same names: ``chdir`` and ``pythonpath`` are
applied first, then either a file is executed as a module (``wsgi-file``) or
a module is imported (``module``, ``pkg.mod:callable`` or ``pkg.mod``).

A failure raises :class:`AppLoadError`; an exception raised *inside* the
user's module (including an ImportError of one of its own imports) is kept
as the error's ``__cause__`` so its own traceback is shown, never reported
as "module not found".
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

__all__ = ["AppLoadError", "prepare_path", "load_app", "check_virtualenv", "activate_virtualenv",
           "parse_mount", "load_mount", "Mounts"]

WSGIApp = Callable[..., Any]


class AppLoadError(Exception):
    """The application could not be loaded; the message says which option
    and what went wrong.  ``__cause__`` holds the app's own exception, if
    any."""


def prepare_path(chdir: Optional[str], pythonpath: Sequence[str]) -> None:
    """Apply uWSGI's ``chdir`` and ``pythonpath`` (prepended to sys.path,
    in the order given).  Raises AppLoadError for a missing directory."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"chdir: cannot change to {chdir!r}: {exc.strerror}") from None
    for entry in reversed(list(pythonpath)):
        path = os.path.abspath(entry)
        if path not in sys.path:
            sys.path.insert(0, path)
    # Like `python -m`, the working directory is importable.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def _virtualenv_version(home: str) -> Optional[str]:
    """The X.Y of the Python a virtualenv was made with: pyvenv.cfg's
    ``version_info`` / ``version`` (PEP 405; ``version_info`` is what
    virtualenv writes), else the one ``lib/pythonX.Y`` directory it has.
    None when neither tells."""
    try:
        with open(os.path.join(home, "pyvenv.cfg"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    cfg = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            cfg[key.strip().lower()] = value.strip()
    for key in ("version_info", "version"):
        parts = cfg.get(key, "").split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return f"{parts[0]}.{parts[1]}"
    try:
        found = sorted(name[len("python"):] for name in os.listdir(os.path.join(home, "lib"))
                       if name.startswith("python") and
                       os.path.isdir(os.path.join(home, "lib", name, "site-packages")))
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def check_virtualenv(home: str) -> str:
    """The site-packages directory of the virtualenv ``home`` (uWSGI's
    ``home`` / ``virtualenv`` / ``venv`` / ``pyhome`` / ``-H``) for the
    running Python.  Raises AppLoadError with one line when ``home`` is not a
    directory, is a virtualenv of another Python version, or has no
    ``lib/pythonX.Y/site-packages`` for this one: a C extension built for
    another version cannot be imported, so the fix is to run the uwsgipy
    installed in that virtualenv (uWSGI's answer too: its python plugin is
    built for one version)."""
    ours = _python_version()
    fix = f"run the uwsgipy installed in that virtualenv ({os.path.join(home, 'bin', 'uwsgipy')})"
    if not os.path.isdir(home):
        raise AppLoadError(f"virtualenv: {home!r} is not a directory")
    theirs = _virtualenv_version(home)
    site_dir = os.path.join(os.path.abspath(home), "lib", f"python{ours}", "site-packages")
    if theirs is not None and theirs != ours:
        raise AppLoadError(f"virtualenv: {home} is a Python {theirs} virtualenv but this uwsgipy "
                           f"runs on Python {ours} ({sys.executable}): {fix}")
    if not os.path.isdir(site_dir):
        raise AppLoadError(f"virtualenv: {home} is not a Python {ours} virtualenv (no "
                           f"lib/python{ours}/site-packages; its Python version: "
                           f"{theirs or 'unknown'}): create it with python{ours} -m venv, or {fix}")
    return site_dir


def activate_virtualenv(home: str) -> str:
    """Make the virtualenv ``home`` the app's environment, as uWSGI's
    ``home`` does by starting its interpreter from it: its site-packages
    (with its .pth files, as ``site`` reads them) go before every other
    site-packages directory on sys.path (after the standard library, where
    uWSGI has them), ``sys.prefix`` / ``sys.exec_prefix`` become ``home``,
    and for subprocesses ``VIRTUAL_ENV`` is set and ``home/bin`` put first
    on PATH.  The site-packages of the Python running uwsgipy stay on
    sys.path after the virtualenv's (uWSGI leaves them out unless the
    virtualenv includes system site-packages): the virtualenv's copy of a
    package wins.  Returns the site-packages directory; raises AppLoadError
    as check_virtualenv."""
    import site
    site_dir = check_virtualenv(home)
    home = os.path.abspath(home)
    before = list(sys.path)
    site.addsitedir(site_dir)  # appends site_dir and what its .pth files add
    added = [p for p in sys.path if p not in before]
    for p in added:
        sys.path.remove(p)
    if site_dir in sys.path:
        sys.path.remove(site_dir)
        added.insert(0, site_dir)
    at = next((i for i, p in enumerate(sys.path)
               if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")),
              len(sys.path))
    sys.path[at:at] = added
    sys.prefix = sys.exec_prefix = home
    os.environ["VIRTUAL_ENV"] = home
    bin_dir = os.path.join(home, "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir] + path)
    return site_dir


def _running_as() -> str:
    """" (running as user nobody, uid 65534)": the usual cause of EACCES is
    a uid/gid switch before the app is read."""
    uid = os.geteuid()
    try:
        import pwd
        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f" (running as uid {uid})"
    return f" (running as user {name}, uid {uid})"


def _from_the_loader(exc: BaseException) -> bool:
    """An OSError raised by importlib itself reading a source file (its last
    frame is importlib's), not by the app's own code."""
    if not isinstance(exc, OSError) or not getattr(exc, "filename", None):
        return False
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and last.startswith("<frozen importlib")


def _check_readable(path: str) -> str:
    """The absolute path of a readable regular file, or AppLoadError saying
    in one line why not (missing, a directory, no permission)."""
    full = os.path.abspath(path)
    try:
        with open(full, "rb"):
            pass
    except FileNotFoundError:
        raise AppLoadError(f"wsgi-file: no such file {path!r} "
                           f"(working directory {os.getcwd()!r})") from None
    except IsADirectoryError:
        raise AppLoadError(f"wsgi-file: {path!r} is a directory, not a Python file") from None
    except OSError as exc:
        raise AppLoadError(f"wsgi-file: cannot read {path!r}: {exc.strerror}{_running_as()}") from None
    if not os.path.isfile(full):
        raise AppLoadError(f"wsgi-file: {path!r} is not a regular file")
    return full


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """A wsgi-file is compiled from its source every time, as uWSGI does,
    whatever its name ends with (``app.wsgi`` too), and never through a
    cached .pyc: the cache is keyed by whole-second mtime and size, so an
    edit that keeps the size, made within the second of the last load (a
    deploy script, a test), would reload the old code."""

    def get_code(self, fullname: str) -> Any:
        return self.source_to_code(self.get_data(self.path), self.path)


def _load_file(path: str) -> ModuleType:
    """Execute a wsgi-file as a fresh module named after the file (uWSGI
    names it ``uwsgi_file_<mangled path>``; we use the file's stem)."""
    full = _check_readable(path)
    directory = os.path.dirname(full)
    if directory not in sys.path:
        # The file's siblings are importable, as in `python file.py`.
        sys.path.insert(0, directory)
    name = "uwsgi_file_" + os.path.splitext(os.path.basename(full))[0].replace("-", "_").replace(".", "_")
    return _exec_file(name, full, "wsgi-file", path)


def _exec_file(name: str, full: str, option: str, shown: str) -> ModuleType:
    """Run the Python source file ``full`` as the module ``name`` (in
    sys.modules while it runs, removed if it fails).  Raises AppLoadError
    naming ``option`` and ``shown`` (the module's exception as __cause__)."""
    spec = importlib.util.spec_from_file_location(name, full, loader=_SourceLoader(name, full))
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{option}: {shown!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        if _from_the_loader(exc):
            raise AppLoadError(f"{option}: cannot read {exc.filename!r}: "  # type: ignore[attr-defined]
                               f"{exc.strerror}{_running_as()}") from None  # type: ignore[attr-defined]
        raise AppLoadError(f"{option}: {shown!r} raised {type(exc).__name__} while loading") from exc
    return module


def pyimport(name: str) -> ModuleType:
    """uWSGI's ``pyimport`` / ``python-import``: import the module ``name``
    before the app; a value with a ``/`` or ending in ``.py`` is a file,
    executed as a module named as uWSGI names it (the path with ``.`` and
    ``/`` as ``_``, a final ``.py`` dropped; a directory is a package, its
    ``__init__.py``).  Raises AppLoadError (the module's own exception as
    ``__cause__``)."""
    if "/" not in name and not name.endswith(".py"):
        try:
            return _import_module(name)
        except AppLoadError as exc:
            raise AppLoadError(str(exc).replace("module: ", "pyimport: ", 1)) from exc.__cause__
    path = os.path.join(name, "__init__.py") if os.path.isdir(name) else name
    modname = name.replace(".", "_").replace("/", "_")
    if modname.endswith("_py"):
        modname = modname[:-3]
    try:
        full = _check_readable(path)
    except AppLoadError as exc:
        raise AppLoadError(str(exc).replace("wsgi-file: ", "pyimport: ", 1)) from None
    return _exec_file(modname, full, "pyimport", name)


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only "this very module (or a parent package) is missing" is ours to
        # rephrase; a missing import inside the user's code is their error.
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppLoadError(
                f"module: no module named {exc.name!r} (sys.path[0:3] = {sys.path[:3]!r}; "
                "set chdir or pythonpath)") from None
        raise AppLoadError(f"module: importing {name!r} raised {type(exc).__name__}") from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if _from_the_loader(exc):
            raise AppLoadError(f"module: importing {name!r}: cannot read "
                               f"{exc.filename!r}: {exc.strerror}{_running_as()}") from None  # type: ignore[attr-defined]
        raise AppLoadError(f"module: importing {name!r} raised {type(exc).__name__}") from exc


def load_app(*, wsgi_file: Optional[str] = None, module: Optional[str] = None,
             callable_name: str = "application") -> WSGIApp:
    """Load and return the WSGI callable.

    ``module`` may be ``pkg.mod:callable`` (the part after ``:`` wins over
    ``callable_name``, as in uWSGI) or ``pkg.mod``.  With both ``module``
    and ``wsgi_file``, the module is the app and the file is not executed,
    as in uWSGI 2.0 (it loads ``module`` first, then skips the file: its
    mountpoint is taken); a module that cannot be loaded is logged and the
    file is served instead, as uWSGI does.  Raises AppLoadError.
    """
    if not wsgi_file and not module:
        raise AppLoadError("give wsgi-file or module (e.g. --wsgi-file app.py "
                           "or --module pkg.wsgi:application)")
    if wsgi_file and module:
        # uWSGI tries each app option in turn for the default mountpoint: a
        # module that cannot be loaded is logged, and the file is served.
        try:
            return load_app(module=module, callable_name=callable_name)
        except AppLoadError as exc:
            logging.getLogger("uwsgipy").warning(
                "module %s cannot be loaded (%s): serving wsgi-file %s instead, as uWSGI "
                "does", module, exc, wsgi_file)
            return load_app(wsgi_file=wsgi_file, callable_name=callable_name)
    if wsgi_file and not module:
        mod = _load_file(wsgi_file)
        where = f"wsgi-file {wsgi_file!r}"
    else:
        assert module is not None
        modname, sep, attr = module.partition(":")
        if sep:
            callable_name = attr
        if not modname or not callable_name:
            raise AppLoadError(f"module: {module!r} is not 'pkg.mod' or 'pkg.mod:callable'")
        mod = _import_module(modname)
        where = f"module {modname!r}"
    factory = callable_name.endswith("()")
    if factory and wsgi_file:
        raise AppLoadError(f"callable: {callable_name!r} (a call) works with module only, as "
                           "in uWSGI; with wsgi-file give the name of the callable")
    if factory:
        callable_name = callable_name[:-2]
    try:
        app = getattr(mod, callable_name)
    except AttributeError:
        found = sorted(n for n in ("application", "app", "wsgi_app") if hasattr(mod, n))
        hint = f" (it has {', '.join(found)}: set callable)" if found else ""
        raise AppLoadError(f"callable: {where} has no attribute {callable_name!r}{hint}") from None
    if factory:
        # uWSGI's "quick callable": module = pkg.mod:make_app() serves make_app()
        if not callable(app):
            raise AppLoadError(f"callable: {where}.{callable_name} is a "
                               f"{type(app).__name__}, not callable")
        try:
            app = app()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise AppLoadError(f"callable: {where}.{callable_name}() raised "
                               f"{type(exc).__name__}") from exc
        callable_name += "()"
    if not callable(app):
        raise AppLoadError(f"callable: {where}.{callable_name} is a {type(app).__name__}, not callable")
    return app


# --------------------------------------------------------------------------
# mount = PREFIX=APP (uWSGI's --mount)
# --------------------------------------------------------------------------

_MODULE_TARGET = None  # compiled lazily (re is not imported at module level here)


def parse_mount(value: str) -> "tuple[str, str, str]":
    """uWSGI's ``mount = PREFIX=APP`` (split at the first '='): returns (prefix, kind, app)
    with kind "file" (a path: ends with .py or .wsgi, or has a '/') or "module"
    (``pkg.mod:callable``, ``pkg.mod:make_app()`` or ``pkg.mod``).  The prefix starts with
    '/', its trailing '/' is dropped ("/" becomes ""), as uWSGI ignores it when matching.
    Raises ValueError."""
    import re
    prefix, sep, target = value.partition("=")
    prefix, target = prefix.strip(), target.strip()
    if not sep:
        raise ValueError(f"expected PREFIX=APP (e.g. /blog=blog/wsgi.py or "
                         f"/api=api.wsgi:application), got {value!r}")
    if not prefix.startswith("/"):
        raise ValueError(f"the mount point {prefix!r} must start with '/'")
    if any(c in prefix for c in "\0\r\n ?#"):
        raise ValueError(f"the mount point {prefix!r} cannot hold spaces, '?', '#' or control "
                         "characters")
    if "//" in prefix or "/./" in prefix + "/" or "/../" in prefix + "/":
        raise ValueError(f"the mount point {prefix!r} must be a clean path (no '//', '.' or "
                         "'..' segments)")
    if not target:
        raise ValueError(f"no application after '=' in {value!r}")
    prefix = prefix.rstrip("/")
    if target.endswith(".ini"):
        raise ValueError(f"{target!r}: paste .ini applications are not supported; mount the "
                         "WSGI app as a file or pkg.mod:callable")
    if target.endswith((".py", ".wsgi")) or "/" in target:
        return prefix, "file", target
    module, colon, attr = target.partition(":")
    dotted = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
    if not dotted.match(module) or (colon and not dotted.match(attr[:-2] if attr.endswith("()")
                                                                else attr)):
        raise ValueError(f"{target!r} is neither a Python file (.py, .wsgi) nor "
                         "'pkg.module[:callable]'")
    return prefix, "module", target


def load_mount(value: str, callable_name: str = "application") -> "tuple[str, WSGIApp]":
    """Load the app of one ``mount`` value like the main app (a file as wsgi-file does,
    a module as module does; ``callable_name`` is the ``callable`` option).  Returns
    (prefix, app).  Raises AppLoadError naming the mount (the app's own exception as
    ``__cause__``)."""
    try:
        prefix, kind, target = parse_mount(value)
    except ValueError as exc:
        raise AppLoadError(f"mount {value}: {exc}") from None
    where = f"mount {prefix or '/'}={target}"
    try:
        if kind == "file":
            full = _check_readable(target)
            directory = os.path.dirname(full)
            if directory not in sys.path:
                sys.path.insert(0, directory)
            # uWSGI's name for a file app (uwsgi_pythonize): the path as given, '.' and '/'
            # as '_'; unique per file, so two mounted app.py files do not share a module
            name = "uwsgi_file_" + target.replace(".", "_").replace("/", "_").replace("-", "_")
            for suffix in ("_py", "_wsgi"):
                if name.endswith(suffix):
                    name = name[:-len(suffix)]
            mod = _exec_file(name, full, "wsgi-file", target)
            if callable_name.endswith("()"):
                raise AppLoadError(f"callable: {callable_name!r} (a call) works with module "
                                   "only, as in uWSGI; with a file give the name of the callable")
            try:
                app = getattr(mod, callable_name)
            except AttributeError:
                found = sorted(n for n in ("application", "app", "wsgi_app") if hasattr(mod, n))
                hint = f" (it has {', '.join(found)}: mount {prefix or '/'}=MODULE:NAME, or set " \
                       "callable)" if found else ""
                raise AppLoadError(f"callable: {target!r} has no attribute "
                                   f"{callable_name!r}{hint}") from None
            if not callable(app):
                raise AppLoadError(f"callable: {target}:{callable_name} is a "
                                   f"{type(app).__name__}, not callable")
        else:
            app = load_app(module=target, callable_name=callable_name)
    except AppLoadError as exc:
        message = str(exc).replace(": set callable)",
                                   f": mount {prefix or '/'}={target.partition(':')[0]}:NAME)")
        for option in ("wsgi-file: ", "module: ", "callable: "):
            if message.startswith(option):
                message = message[len(option):]
                break
        raise AppLoadError(f"{where}: {message}") from exc.__cause__
    return prefix, app


class Mounts:
    """The apps of one server: ``default`` answers what no mount takes (None: 404), and
    ``mounts`` is ((prefix, app), ...) in config order, prefixes as in parse_mount (a
    prefix "" is taken by a request whose SCRIPT_NAME is empty: the main app under
    no-default-app)."""

    def __init__(self, default: Optional[WSGIApp], mounts: Sequence["tuple[str, WSGIApp]"]) -> None:
        self.default = default
        self.mounts = tuple(mounts)

    def map(self, wrap: Callable[[WSGIApp], WSGIApp]) -> "Mounts":
        """The same apps, each passed through ``wrap`` (route and file-wrapper wrappers)."""
        return Mounts(None if self.default is None else wrap(self.default),
                      [(p, wrap(a)) for p, a in self.mounts])

    def __repr__(self) -> str:
        return f"Mounts(default={self.default!r}, mounts={self.mounts!r})"


def not_found(environ: dict, start_response: Callable) -> Any:
    """The app for requests no app is mounted for (no default app): 404."""
    body = b"404 Not Found: no application is mounted at this path\n"
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def load_mounts(values: Sequence[str], main: Optional[WSGIApp], *,
                callable_name: str = "application", no_default_app: bool = False) -> Mounts:
    """Load every ``mount`` (in order, after the main app) and choose the default app as
    uWSGI 2.0 does: the main app (wsgi-file / module), else the first mount (uWSGI makes the
    first app it loads the "default app"), else none; ``no-default-app`` turns the fallback
    off (the main app then serves only requests with an empty SCRIPT_NAME).  ``mount =
    /=APP`` is the default app.  Raises AppLoadError."""
    mounts: "list[tuple[str, WSGIApp]]" = []
    seen: "dict[str, str]" = {}
    default_from_mount: Optional[WSGIApp] = None
    for value in values:
        prefix, app = load_mount(value, callable_name)
        if prefix in seen:
            raise AppLoadError(f"mount {value}: the mount point {prefix or '/'} is already "
                               f"taken by mount {seen[prefix]}")
        seen[prefix] = value
        if prefix == "":
            if main is not None:
                raise AppLoadError(f"mount {value}: '/' is the main app's (wsgi-file or "
                                   "module); mount the other app under a prefix")
            default_from_mount = app
            continue
        mounts.append((prefix, app))
    if main is None:
        main = default_from_mount
        if main is None and mounts and not no_default_app:
            main = mounts[0][1]  # uWSGI's first app is the default app
            return Mounts(main, mounts)
    if no_default_app:
        if main is not None:
            mounts.append(("", main))
        return Mounts(None, mounts)
    return Mounts(main, mounts)
