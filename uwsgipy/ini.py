"""uWSGI's configuration language: ini files, ``UWSGI_*`` variables, magic
variables, placeholders, ``$(ENV)``, ``@(file)`` and the logic options.

This module reproduces what uWSGI 2.0 does (core/ini.c, core/config.c,
core/uwsgi.c, core/utils.c), checked against the real binary by
tests/test_ini_differential.py.  It knows nothing of uwsgipy's settings:
it turns the sources into uWSGI's *exported options*, an ordered list of
``(key, value)`` entries, which :mod:`uwsgipy.config` then maps onto the
settings table.  uWSGI's order of work, which decides every result:

1. ``UWSGI_*`` environment variables become entries, in environ order
   (``UWSGI_HTTP_SOCKET`` -> ``http-socket``).  ``UWSGI_INI`` reads its file
   right there.
2. Command-line options become entries in argv order; ``--ini`` reads its
   file at that point.  Positional config files are read last.
3. Reading a file substitutes the magic variables (``%d``, ``%n``, ``%k`` ...)
   over its whole text first, then splits it into lines.  Logic options
   (``if-env``, ``for`` ... ``endif``/``endfor``) act while entries are added.
4. When everything is read, three passes run over every entry's value, in
   this order: ``$(VAR)`` (environment), ``@(FILE)`` (file contents), and
   ``%(name)`` (the first entry called ``name``, with uWSGI's arithmetic).
   Entries acted on while reading (``ini``, ``set-placeholder``, the logic
   options ...) are never expanded, as in uWSGI.

Deliberate differences from uWSGI are marked DEVIATION; docs/configuration.md
lists them for users.  Problems uWSGI passes over silently become warnings
(``Reader.warnings``), and errors with ``strict``.
"""

from __future__ import annotations

import glob as _glob
import grp
import logging
import os
import pwd
import re
import socket as _socket
import stat as _stat
import sys
import time
from dataclasses import dataclass
from typing import (Callable, Collection, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Set, Tuple)

from uwsgipy import __version__

__all__ = [
    "IniError",
    "Entry",
    "Reader",
    "LANGUAGE_KEYS",
    "KEEP_PLACEHOLDERS",
    "split_spec",
    "suggest",
    "inline_comment",
    "show_config_text",
    "report_config",
    "DOCS",
]


class IniError(Exception):
    """A configuration-language mistake; the message is one line naming the
    source ("app.ini:7", "env UWSGI_INI", "command line") and the option."""


@dataclass
class Entry:
    """One of uWSGI's exported options.

    ``value`` is None only for a command-line flag given without a value
    (uWSGI's NULL, shown as ``true`` by show-config); an ini line without
    ``=`` has the value "".  ``immediate`` entries were acted on while
    reading and are never expanded; ``placeholder`` entries come from
    set-placeholder and are never options.
    """

    key: str
    value: Optional[str]
    origin: str
    source: str  # "env", "cli" or "ini"
    immediate: bool = False
    placeholder: bool = False


# --------------------------------------------------------------------------
# Keys of the language itself (uWSGI's UWSGI_OPT_IMMEDIATE logic options).
# --------------------------------------------------------------------------

# Openers of a logic block -> the condition's name; uWSGI spells some twice.
_LOGIC = {
    "if-env": "if-env", "ifenv": "if-env", "if-not-env": "if-not-env",
    "if-opt": "if-opt", "if-not-opt": "if-not-opt",
    "if-exists": "if-exists", "ifexists": "if-exists", "if-not-exists": "if-not-exists",
    "if-file": "if-file", "if-not-file": "if-not-file",
    "if-dir": "if-dir", "ifdir": "if-dir", "if-directory": "if-dir", "if-not-dir": "if-not-dir",
    "if-plugin": "if-plugin", "ifplugin": "if-plugin", "if-not-plugin": "if-not-plugin",
    "if-hostname": "if-hostname", "if-not-hostname": "if-not-hostname",
    "if-hostname-match": "if-hostname-match", "if-not-hostname-match": "if-not-hostname-match",
    "if-reload": "if-reload", "if-not-reload": "if-not-reload",
    "for": "for", "for-glob": "for-glob", "for-readline": "for-readline", "for-times": "for-times",
}
# uWSGI closes any open block on each of these ("end" is not even an option).
_END = frozenset({"end", "endif", "end-if", "endfor", "end-for"})

# Keys handled here rather than by the settings table: never "unknown".
LANGUAGE_KEYS: Tuple[str, ...] = tuple(_LOGIC) + tuple(sorted(_END)) + ("include", "iprint")

# Options whose values keep unresolved %(name): uWSGI's log variables
# (%(uri), %(status) ...) share the placeholder syntax.
KEEP_PLACEHOLDERS = frozenset({"log-format", "logformat"})

# Variables uWSGI itself sets for its own use and never reads as options
# (core/utils.c parse_sys_envs).
_ENV_SKIP = frozenset({
    "UWSGI_RELOADS", "UWSGI_VASSALS_DIR", "UWSGI_EMPEROR_FD", "UWSGI_BROODLORD_NUM",
    "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_EMPEROR_PROXY", "UWSGI_JAIL_PID",
    "UWSGI_ORIGINAL_PROC_NAME",
})

# Set by the arbiter before it re-executes itself for a graceful reload
# (uwsgipy.arbiter.ENV_REEXEC); if-reload tests it.
_ENV_REEXEC = "UWSGIPY_REEXEC"

_MAX_INCLUDE_DEPTH = 32
# uWSGI re-scans a value after each substitution, so a value that refers to
# itself never ends there; here it is an error past these bounds.
_MAX_SUBSTITUTIONS = 1000
_MAX_VALUE = 1 << 20
_READLINE_CHUNK = 1023  # for-readline reads with fgets(line, 1024, ...)
_MAX_LOOP = 100_000  # for-times / for items: more is a typo, not a configuration

_FALSE_WORDS = frozenset({"false", "off", "no"})


def _uwsgi_true(value: Optional[str]) -> bool:
    """uwsgi_opt_true: anything but false/off/no (any case) and "0" is true."""
    return value is None or not (value.lower() in _FALSE_WORDS or value == "0")


def _env_to_key(name: str) -> str:
    """core/utils.c env_to_arg: UWSGI_HTTP_SOCKET -> http-socket."""
    return name.lower().replace("_", "-")


def split_spec(spec: str) -> Tuple[str, Optional[str]]:
    """'file.ini:section' -> ('file.ini', 'section'); the section is None
    when absent (uWSGI's default, "uwsgi").  ':section' (empty file) means
    "the file read last", as in uWSGI.

    DEVIATION: uWSGI splits at the last ':' blindly; an existing file whose
    name has a ':' is taken whole here.
    """
    if ":" in spec and not os.path.exists(spec):
        path, _, section = spec.rpartition(":")
        if "/" not in section:
            return path, section or None
    return spec, None


def suggest(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest real name, or ''."""
    import difflib

    # 0.8: typos of a real name (htp-socket, proceses, harakri), not any
    # word that shares a few letters with one (home_is is not home).
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.8)
    return f" (did you mean '{close[0]}'?)" if close else ""


_INLINE_COMMENT = re.compile(r"[ \t][;#]")


def inline_comment(value: str) -> Optional[int]:
    """Index where a would-be inline comment (' ;' or ' #') starts, or None.

    uWSGI has no inline comments: ``processes = 4 ; four`` is the value
    "4 ; four" (which its atoi() reads as 4).
    """
    m = _INLINE_COMMENT.search(value)
    return m.start() if m else None


# --------------------------------------------------------------------------
# Numbers as uWSGI's C code reads and writes them.
# --------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _strtoll(text: str) -> int:
    """C strtoll(text, NULL, 10): leading number, 0 if none, clamped."""
    m = _STRTOLL.match(text)
    if not m:
        return 0
    return max(_INT64_MIN, min(_INT64_MAX, int(m.group(1))))


def _wrap64(n: int) -> int:
    n &= (1 << 64) - 1
    return n - (1 << 64) if n > _INT64_MAX else n


def _is_a_number(token: str) -> bool:
    """core/utils.c is_a_number: only ASCII digits (so "-1" is not)."""
    return all("0" <= c <= "9" for c in token)


def _atoi(text: str) -> int:
    """C atoi() as glibc does it: (int) strtol()."""
    n = _strtoll(text) & 0xFFFFFFFF
    return n - (1 << 32) if n >= (1 << 31) else n


# --------------------------------------------------------------------------
# Magic variables (core/uwsgi.c config_magic_table_fill, uwsgi_setup).
# --------------------------------------------------------------------------


def _djb33x_hex(data: bytes) -> str:
    """%j: core/hash.c djb33x_hash of %p, its four bytes in memory order
    (little-endian on the machines uwsgipy runs on) as upper-case hex."""
    h = 5381
    for b in data:
        signed = b - 256 if b >= 128 else b  # C char is signed on x86/ARM Linux
        h = (((h << 5) + h) ^ signed) & 0xFFFFFFFF
    return h.to_bytes(4, sys.byteorder).hex().upper()


def _binary_path() -> str:
    """%b.  DEVIATION: uWSGI's binary path; here the uwsgipy command, or the
    Python interpreter when run as ``python -m uwsgipy``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 and os.path.basename(argv0) != "__main__.py" and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    return sys.executable


def _static_magic() -> Dict[str, str]:
    """The magic variables that do not depend on the file (uwsgi_setup)."""
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    now_us = time.time_ns() // 1000
    try:
        cpus = os.sysconf("SC_NPROCESSORS_ONLN")
    except (ValueError, OSError):
        cpus = os.cpu_count() or 1
    return {
        "v": os.getcwd(),
        "h": _socket.gethostname(),
        "t": str(now_us // 1_000_000),
        "T": str(now_us),
        # DEVIATION: uWSGI's own version there; uwsgipy's here.
        "V": __version__,
        "k": str(cpus),
        "[": "\x1b",
        "u": str(uid),
        "U": user,
        "g": str(gid),
        "G": group,
    }


_UPPER = "ODSPCENXIJ"


def _magic_sub(data: bytes, table: Mapping[int, bytes]) -> Tuple[bytes, List[int], List[int]]:
    """core/utils.c magic_sub over a whole file: '%' and the next byte become
    table[byte], which is "" for bytes without a meaning -- so a '%' at the
    end of a line swallows the newline, as in uWSGI.

    Returns the text, for each of its lines the number of the file line it
    starts on, and the numbers of the lines whose break a '%' swallowed.
    """
    out = bytearray()
    line_starts = [1]
    joined: List[int] = []
    line = 1

    def emit(chunk: bytes, advances: bool) -> None:
        nonlocal line
        for _ in range(chunk.count(b"\n")):
            line += advances
            line_starts.append(line)
        out.extend(chunk)

    i, n = 0, len(data)
    while True:
        j = data.find(b"%", i)
        emit(data[i:] if j < 0 else data[i:j], True)
        if j < 0 or j + 1 == n:  # at the very end, '%' takes the terminating NUL
            break
        if data[j + 1] == 0x0A:
            joined.append(line)
            line += 1
        emit(table.get(data[j + 1], b""), False)
        i = j + 2
    return bytes(out), line_starts, joined


# --------------------------------------------------------------------------
# The reader.
# --------------------------------------------------------------------------


class Reader:
    """Builds uWSGI's exported options from the environment, the command
    line and ini files, then expands them (:meth:`finish`).

    ``options``: every option name the settings table knows (aliases too),
    for set-placeholder's check, "unknown option" warnings and suggestions.
    ``out``: where ``print``/``iprint`` write (stdout, as in uWSGI).
    """

    def __init__(self, environ: Mapping[str, str], options: Collection[str],
                 out: Optional[Callable[[str], None]] = None) -> None:
        self.environ = environ
        self.options = frozenset(options)
        self.out = out or _print_stdout
        self.entries: List[Entry] = []
        self.warnings: List[str] = []
        self.files_read: List[str] = []
        self.strict = False
        self.strict_errors: List[str] = []  # what strict refuses (unknown keys)
        self.used: Set[str] = set()  # names looked up as %(name) or by if-opt
        self._magic: Dict[int, bytes] = {}
        self._magic[ord("%")] = b"%"
        self._magic[ord("(")] = b"%("
        for letter, text in _static_magic().items():
            self._magic[ord(letter)] = text.encode("utf-8", "surrogateescape")
        self._first_round_done = False  # uwsgi.magic_table_first_round
        self._last_file: Optional[str] = None
        self._stack: List[Tuple[str, str]] = []
        # Logic state (uwsgi.logic_opt, logic_opt_arg, logic_opt_running).
        self._logic: Optional[Tuple[str, str, str, str]] = None  # cond, arg, key, origin
        self._running = False

    # -- adding entries (config.c add_exported_option_do) ---------------------

    def add(self, key: str, value: Optional[str], origin: str, source: str) -> None:
        """One option from any source, through the logic state, as uWSGI."""
        if not self._running:
            if key in _END:
                self._logic = None
            if self._logic is not None:
                self._run_logic(key, value, origin, source)
                return
        self._append(key, value, origin, source)

    def read_environ(self) -> None:
        """UWSGI_* variables, in environ order (core/utils.c parse_sys_envs)."""
        for var, value in list(self.environ.items()):
            if not var.startswith("UWSGI_") or var in _ENV_SKIP:
                continue
            key = _env_to_key(var[len("UWSGI_"):])
            if key:
                self.add(key, value, f"env {var}", "env")

    def read_file(self, spec: str, origin: str) -> None:
        """A config file named on the command line without an option
        (``uwsgipy app.ini``): uWSGI's uwsgi_opt_load, read after every
        option, with no ``ini`` entry and without the upper-case magic
        variables."""
        self._opt_load(spec, origin, base_dir=None)

    def _append(self, key: str, value: Optional[str], origin: str, source: str) -> None:
        entry = Entry(key, value, origin, source)
        self.entries.append(entry)
        handler = self._IMMEDIATE.get(key)
        if handler is None and key in _LOGIC:
            handler = Reader._open_block
        if handler is not None:
            entry.immediate = True
            handler(self, entry)

    # -- immediate options ----------------------------------------------------

    def _ini(self, entry: Entry) -> None:
        base = os.path.dirname(entry.origin.rsplit(":", 1)[0]) if entry.source == "ini" else None
        self._load(entry.value or "", entry.origin, base_dir=base)

    def _include(self, entry: Entry) -> None:
        base = os.path.dirname(entry.origin.rsplit(":", 1)[0]) if entry.source == "ini" else None
        self._opt_load(entry.value or "", entry.origin, base_dir=base)

    def _strict(self, entry: Entry) -> None:
        self.strict = _uwsgi_true(entry.value)

    def _set_placeholder(self, entry: Entry) -> None:
        name, value = self._split_assignment(entry)
        if name in self.options or name in _LOGIC or name in _END:
            raise IniError(
                f"{entry.origin}: '{entry.key}': '{name}' is an option, so it cannot be "
                "a placeholder (pick another name)")
        self.entries.append(Entry(name, value, entry.origin, entry.source,
                                  immediate=True, placeholder=True))

    def _set(self, entry: Entry) -> None:
        name, value = self._split_assignment(entry)
        self.add(name, value, entry.origin, entry.source)

    def _iprint(self, entry: Entry) -> None:
        self.out(entry.value or "")

    def _end_block(self, entry: Entry) -> None:
        pass  # the block was closed by add(); uWSGI's uwsgi_opt_noop

    @staticmethod
    def _split_assignment(entry: Entry) -> Tuple[str, str]:
        name, sep, value = (entry.value or "").partition("=")
        if not sep:
            raise IniError(f"{entry.origin}: '{entry.key}' needs NAME=VALUE, got "
                           f"'{entry.value or ''}'")
        return name, value  # uWSGI keeps spaces: "a = b" is the name "a "

    _IMMEDIATE: Dict[str, Callable[["Reader", Entry], None]] = {
        "ini": _ini,
        "include": _include,
        "strict": _strict,
        "set-placeholder": _set_placeholder,
        "set-ph": _set_placeholder,
        "set": _set,
        "iprint": _iprint,
        "endif": _end_block,
        "end-if": _end_block,
        "endfor": _end_block,
        "end-for": _end_block,
    }

    # -- logic blocks (config.c uwsgi_logic_opt_*) ------------------------------

    def _open_block(self, entry: Entry) -> None:
        if self._logic is not None:
            _, _, outer, outer_origin = self._logic
            raise IniError(
                f"{entry.origin}: '{entry.key}' inside the '{outer}' block opened at "
                f"{outer_origin}: uWSGI does not nest if/for blocks (close the first "
                "with endif/endfor)")
        self._logic = (_LOGIC[entry.key], entry.value or "", entry.key, entry.origin)

    def _run_logic(self, key: str, value: Optional[str], origin: str, source: str) -> None:
        cond, arg, opener, opener_origin = self._logic  # type: ignore[misc]
        replacements = self._evaluate(cond, arg, opener_origin)
        if not replacements and key in _LOGIC:
            self.warnings.append(
                f"{origin}: '{key}' inside the '{opener}' block opened at {opener_origin} is "
                f"skipped with it, and the next endif/endfor closes both blocks (uWSGI does "
                "not nest if/for blocks)")
        for replacement in replacements:
            text = value
            if replacement is not None and text is not None:
                text = text.replace("%(_)", replacement)
            self._running = True
            try:
                self._append(key, text, origin, source)
            finally:
                self._running = False

    def _evaluate(self, cond: str, arg: str, where: str) -> List[Optional[str]]:
        """The %(_) values to add the current line with: [] skips it; None
        adds it unchanged."""
        if cond in ("for", "for-glob", "for-readline", "for-times"):
            items = list(self._loop_items(cond, arg, where))
            if len(items) > _MAX_LOOP:
                raise IniError(f"{where}: '{cond} = {arg}' repeats its block more than "
                               f"{_MAX_LOOP} times, the most uwsgipy allows")
            return items
        if cond in ("if-reload", "if-not-reload"):
            is_reload = self.environ.get(_ENV_REEXEC) == "1"
            return [None] if is_reload == (cond == "if-reload") else []
        if cond in ("if-env", "if-not-env", "if-opt", "if-not-opt"):
            name, sep, wanted = arg.partition("=")
            if cond.endswith("env"):
                found = self.environ.get(name)
            else:
                self.used.add(name)
                found = self._first_value(name)
            if cond.startswith("if-not"):
                if found is not None and (not sep or wanted == found):
                    return []
                return [found]
            if found is None or (sep and wanted != found):
                return []
            return [found]
        negate = cond.startswith("if-not-")
        test = cond.replace("if-not-", "if-", 1)
        if test == "if-exists":
            ok = os.access(arg, os.R_OK)
        elif test in ("if-file", "if-dir"):
            try:
                mode = os.stat(arg).st_mode
            except (OSError, ValueError):
                ok = False
            else:
                ok = _stat.S_ISREG(mode) if test == "if-file" else _stat.S_ISDIR(mode)
        elif test == "if-plugin":
            # Only the python plugin exists, built in (uWSGI names it "python").
            ok = arg == "python"
        elif test == "if-hostname":
            ok = arg == _socket.gethostname()
        elif test == "if-hostname-match":
            try:
                ok = re.search(arg, _socket.gethostname()) is not None
            except re.error as exc:
                raise IniError(f"{where}: '{cond}': invalid regular expression "
                               f"'{arg}' ({exc})") from None
        else:  # pragma: no cover - every key of _LOGIC is handled above
            raise AssertionError(cond)
        return [arg] if ok != negate else []

    def _loop_items(self, cond: str, arg: str, where: str) -> Iterable[str]:
        if cond == "for":
            return [t for t in arg.split(" ") if t]  # strtok(arg, " ")
        if cond == "for-times":
            return [str(i) for i in range(1, min(_atoi(arg), _MAX_LOOP + 1) + 1)]
        if cond == "for-glob":
            # glob(3) with GLOB_MARK | GLOB_NOCHECK: sorted, directories with
            # a trailing '/', the pattern itself when nothing matches.
            found = sorted(_glob.glob(arg))
            return [p + "/" if os.path.isdir(p) and not p.endswith("/") else p
                    for p in found] or [arg]
        try:
            with open(arg, "rb") as f:
                data = f.read()
        except OSError as exc:
            self._warn(f"{where}: for-readline: cannot read '{arg}': "
                               f"{exc.strerror}; the block adds nothing (as in uWSGI)")
            return []
        items = []
        for raw in data.splitlines(keepends=True):
            # fgets() with a 1024-byte buffer: longer lines come in pieces.
            for start in range(0, max(len(raw), 1), _READLINE_CHUNK):
                piece = raw[start:start + _READLINE_CHUNK]
                items.append(piece.rstrip(b"\r\n").decode("utf-8", "surrogateescape"))
        return items

    def _first_value(self, name: str) -> Optional[str]:
        """config.c uwsgi_get_exported_opt: the first entry with that key."""
        for entry in self.entries:
            if entry.key == name:
                return entry.value
        return None

    # -- files (ini.c uwsgi_ini_config, uwsgi.c uwsgi_opt_load) --------------------

    def _opt_load(self, spec: str, origin: str, base_dir: Optional[str]) -> None:
        path, _ = split_spec(spec)
        if not path.endswith(".ini"):
            raise IniError(f"{origin}: cannot read '{spec}': only ini files are supported "
                           "(xml, yaml and json configs are not)")
        first_round = self._first_round_done
        self._first_round_done = True  # "avoid setting upper magic vars"
        try:
            self._load(spec, origin, base_dir)
        finally:
            self._first_round_done = first_round

    def _load(self, spec: str, origin: str, base_dir: Optional[str]) -> None:
        path, section = split_spec(spec)
        if spec.startswith(":"):
            if self._last_file is None:
                raise IniError(f"{origin}: '{spec}' names a section of the last ini file, "
                               "but none was read yet")
            path = self._last_file
        elif not os.path.exists(path) and base_dir and not os.path.isabs(path):
            # DEVIATION: uWSGI resolves an include against the current
            # directory only; when it is not there, uwsgipy also tries the
            # including file's directory.
            beside = os.path.join(base_dir, path)
            if os.path.exists(beside):
                path = beside
        section = section or "uwsgi"
        key = (os.path.abspath(path), section)
        if key in self._stack:
            chain = " -> ".join(p for p, _ in self._stack + [key])
            raise IniError(f"{origin}: ini include cycle: {chain}")
        if len(self._stack) >= _MAX_INCLUDE_DEPTH:
            raise IniError(f"{origin}: ini includes nested deeper than {_MAX_INCLUDE_DEPTH}")
        data = self._read_config(path, origin, base_dir)
        self._fill_magic(path, split_spec(spec)[1], reuse=spec.startswith(":"))
        self._last_file = path
        self.files_read.append(path if section == "uwsgi" else f"{path}:{section}")
        self._stack.append(key)
        try:
            self._parse(data, path, section)
        finally:
            self._stack.pop()

    @staticmethod
    def _read_config(path: str, origin: str, base_dir: Optional[str]) -> bytes:
        hint = ""
        if "$(" in path or "%(" in path or "@(" in path:
            hint = (" (uWSGI expands only magic variables such as %d in ini = ..., "
                    "not $(...), %(...) or @(...))")
        elif base_dir is not None and not os.path.isabs(path):
            hint = (f" (neither in the current directory nor in {base_dir or '.'}/; "
                    "%d names the including file's directory)")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise IniError(f"{origin}: ini file '{path}' not found{hint}") from None
        except IsADirectoryError:
            raise IniError(f"{origin}: ini file '{path}' is a directory") from None
        except OSError as exc:
            raise IniError(f"{origin}: cannot read ini file '{path}': {exc.strerror}") from None
        # DEVIATION: a UTF-8 byte-order mark (Windows editors) is skipped;
        # uWSGI would read it as part of the first line.
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IniError(f"{origin}: ini file '{path}' is not UTF-8 text "
                           f"({exc.reason})") from None
        return data

    def _fill_magic(self, path: str, section: Optional[str], reuse: bool) -> None:
        """config_magic_table_fill: the per-file magic variables."""
        m: Dict[str, str] = {}
        if not reuse:
            m["o"] = path
            if os.path.islink(path):
                # uWSGI's special case: a symlink is not resolved.
                full = path if path.startswith("/") else f"{os.getcwd()}/{path}"
            else:
                full = os.path.realpath(path)
            m["b"] = _binary_path()
            m["p"] = full
            m["j"] = _djb33x_hex(full.encode("utf-8", "surrogateescape"))
            try:
                m["i"] = str(os.lstat(full).st_ino)
            except OSError:
                pass
            s = full.rsplit("/", 1)[-1]
            d = full[:len(full) - len(s)]
            m.update(s=s, d=d, c="", e="", n=s)
            for digit in "0123456789":
                m[digit] = ""
            trimmed = d[:-1] if d.endswith("/") else d
            if "/" in trimmed:
                m["c"] = trimmed.rsplit("/", 1)[1]
            for digit, part in zip("0123456789", [p for p in trimmed.split("/") if p]):
                m[digit] = part
            if "." in s:
                m["e"] = s.rsplit(".", 1)[1]
                m["n"] = s.rsplit(".", 1)[0]
        m["x"] = section or ""
        for letter, text in m.items():
            self._magic[ord(letter)] = text.encode("utf-8", "surrogateescape")
        if not self._first_round_done:
            for upper in _UPPER:
                self._magic[ord(upper)] = self._magic.get(ord(upper.lower()), b"")
            self._first_round_done = True

    def _parse(self, data: bytes, path: str, section_asked: str) -> None:
        text, line_starts, joined = _magic_sub(data, self._magic)
        for lineno in joined:
            self._warn(f"{path}:{lineno}: the '%' at the end of the line swallows the line "
                       "break, so the next line is part of this one (as in uWSGI); write %% "
                       "for a percent sign")
        section = ""
        sections_seen: List[str] = []
        got_section = False
        for index, raw in enumerate(text.split(b"\n")):
            line = raw.decode("utf-8", "surrogateescape").strip(" \t\r")
            if not line or line[0] in ";#":
                continue
            if line[0] == "[":
                section = line[1:-1]  # uWSGI drops the last character, whatever it is
                sections_seen.append(section)
                continue
            if section != section_asked:
                continue
            got_section = True
            key, _, value = line.partition("=")
            self.add(key.rstrip(" \t\r"), value.strip(" \t\r"),
                     f"{path}:{line_starts[index]}", "ini")
        if not got_section:
            if section_asked in sections_seen:
                detail = f"the [{section_asked}] section is empty"
            else:
                found = ", ".join(f"[{s}]" for s in dict.fromkeys(sections_seen))
                detail = f"no [{section_asked}] section" + (
                    f" (sections found: {found})" if found else " (the file has no sections)")
            self._warn(f"{path}: {detail}; nothing read from it")

    # -- the expansion passes (utils.c uwsgi_apply_config_pass) -------------------

    def finish(self) -> None:
        """Close the reading: the $(VAR), @(FILE) and %(name) passes, then
        the ``print`` output, then the checks that only uwsgipy makes."""
        if self._logic is not None:
            _, _, opener, origin = self._logic
            self._warn(f"{origin}: the '{opener}' block is never closed (add "
                               "endif/endfor): it applied to every line after it")
        for symbol, hook in (("$", self._env_hook), ("@", self._file_hook),
                             ("%", self._placeholder_hook)):
            for entry in self.entries:
                if entry.value is not None and not entry.immediate:
                    entry.value = self._apply_pass(entry, symbol, hook)
        for entry in self.entries:
            if entry.key == "print" and not entry.immediate:
                self.out(entry.value if entry.value is not None else "")

    def _apply_pass(self, entry: Entry, symbol: str,
                    hook: Callable[[Entry, str], Optional[str]]) -> str:
        """uWSGI's scanner, quirks included: nested parentheses belong to the
        name; after a substitution the scan restarts at the second character,
        so the result is expanded again, except a reference at the very start
        (``%(empty)%(b)`` keeps ``%(b)``)."""
        value = entry.value or ""
        substitutions = 0
        has_symbol = depth = 0
        key_start = 0
        j = 0
        while j < len(value):
            c = value[j]
            if c == symbol:
                has_symbol = 1
            elif c == "(" and has_symbol == 1:
                has_symbol, depth, key_start = 2, 0, j + 1
            elif has_symbol > 1:
                if c == "(":
                    has_symbol += 1
                    depth += 1
                elif c == ")":
                    if depth > 0:
                        has_symbol += 1
                        depth -= 1
                    elif has_symbol <= 2:
                        has_symbol = 0
                    else:
                        name = value[key_start:key_start + has_symbol - 2]
                        found = hook(entry, name)
                        if found is not None:
                            end = key_start + has_symbol - 1
                            value = value[:key_start - 2] + found + value[end:]
                            substitutions += 1
                            if substitutions > _MAX_SUBSTITUTIONS or len(value) > _MAX_VALUE:
                                raise IniError(
                                    f"{entry.origin}: option '{entry.key}': {symbol}(...) "
                                    "references expand without end (a value that "
                                    "refers to itself?)")
                            j = 0  # and the loop's increment makes it 1, as in C
                        has_symbol = 0
                else:
                    has_symbol += 1
            else:
                has_symbol = 0
            j += 1
        return value

    def _env_hook(self, entry: Entry, name: str) -> Optional[str]:
        found = self.environ.get(name)
        if found is None:
            self._warn(f"{entry.origin}: option '{entry.key}': environment variable "
                               f"'{name}' is not set, so '$({name})' stays as written (as "
                               "in uWSGI)")
        return found

    def _file_hook(self, entry: Entry, name: str) -> Optional[str]:
        if "://" in name:
            raise IniError(f"{entry.origin}: option '{entry.key}': @({name}): only plain "
                           "files can be read (no exec://, http:// ... sources)")
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise IniError(f"{entry.origin}: option '{entry.key}': cannot read @({name}): "
                           f"{exc.strerror}") from None
        if data[-1:] in (b"\n", b"\r"):
            data = data[:-1]  # one trailing newline character, no more
        return data.decode("utf-8", "surrogateescape")

    def _placeholder_hook(self, entry: Entry, name: str) -> Optional[str]:
        """config.c uwsgi_manage_placeholder: a name, or a pipeline of
        names, numbers and + - * / ++ -- evaluated left to right."""
        if " " not in name:
            self.used.add(name)
            found = self._first_value(name)
            if found is None and entry.key not in KEEP_PLACEHOLDERS:
                if any(e.key == name for e in self.entries):
                    detail = (f"'%({name})' stays as written: '{name}' was given as a "
                              "command-line flag, which has no value (as in uWSGI)")
                elif name == "_":
                    detail = ("'%(_)' has no value here: for blocks set it, and the "
                              "if-* tests that find a value")
                else:
                    detail = (f"unknown placeholder '%({name})' stays as written (as in "
                              "uWSGI); set it with 'name = value' or set-placeholder")
                self._warn(f"{entry.origin}: option '{entry.key}': {detail}")
            return found
        current: Optional[str] = None
        operator = ""
        for token in (t for t in name.split(" ") if t):
            if token in ("+", "-", "*", "/"):
                operator = token
                continue
            if token in ("++", "--"):
                if current is not None:
                    current = str(_wrap64(_strtoll(current) + (1 if token == "++" else -1)))
                operator = ""
                continue
            if _is_a_number(token):
                value = token
            else:
                self.used.add(token)
                value = self._first_value(token) or ""
            if not operator:
                current = (current or "") + value
            else:
                a = _strtoll(current) if current is not None else 0
                b = _strtoll(value)
                if operator == "+":
                    result = a + b
                elif operator == "-":
                    result = a - b
                elif operator == "*":
                    result = a * b
                elif b == 0:
                    result = 0  # uWSGI: "avoid division by zero"
                else:
                    result = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # C truncates
                current = str(_wrap64(result))
            operator = ""
        return current

    # -- uwsgipy's checks ----------------------------------------------------------

    def _warn(self, message: str) -> None:
        if message not in self.warnings:  # a re-scanned value would repeat it
            self.warnings.append(message)

    def check_strict(self) -> None:
        """strict is uWSGI's: it refuses keys that are not options, and
        nothing else; the other configuration warnings stay warnings, as
        uWSGI starts those files (a real deployment sets strict beside values
        with '; comments' after them)."""
        if self.strict_errors:
            raise IniError(self.strict_errors[0])

    def check_unknown(self) -> None:
        """One warning per key that is neither an option nor a placeholder
        something uses; with strict, one per key that is not an option."""
        known = self.options | frozenset(LANGUAGE_KEYS)
        seen: Set[Tuple[str, str]] = set()
        for entry in self.entries:
            if entry.placeholder or entry.key in known:
                continue
            if (entry.key, entry.origin) in seen:
                continue
            seen.add((entry.key, entry.origin))
            dashed = entry.key.replace("_", "-")
            if entry.source == "ini" and dashed != entry.key and dashed in known:
                hint = (f" (did you mean '{dashed}'? uWSGI reads '{entry.key}' as a "
                        "placeholder: ini keys are written with '-')")
            else:
                # Suggest the language's own keys only for what looks like them.
                language = entry.key.startswith(("if", "for", "end", "incl", "ipr"))
                hint = suggest(entry.key, known if language else self.options)
            if self.strict:
                # uWSGI's strict refuses every key that is not an option.
                self.strict_errors.append(
                    f"{entry.origin}: unknown option '{entry.key}'{hint}: strict allows only "
                    "options (declare placeholders with set-placeholder)")
            elif entry.key not in self.used:
                self.warnings.append(
                    f"{entry.origin}: unknown option '{entry.key}' ignored"
                    + (hint or f" (no option is called so, and nothing uses %({entry.key}))"))


def _print_stdout(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# show-config and the start-up report.
# --------------------------------------------------------------------------


def show_config_text(entries: Sequence[Tuple[str, Optional[str]]]) -> str:
    """The resolved configuration in uWSGI's show-config format."""
    lines = ["", ";uWSGI instance configuration", "[uwsgi]"]
    lines += [f"{key} = {'true' if value is None else value}" for key, value in entries]
    lines += [";end of configuration", "", ""]
    return "\n".join(lines)


def report_config(cfg: object, log: Optional[logging.Logger] = None) -> None:
    """Log the configuration warnings of a loaded Config, one line each,
    then write show-config's block to stderr when asked.  Call it once
    logging is set up (so both go to logto)."""
    log = log or logging.getLogger("uwsgipy")
    for message in getattr(cfg, "warnings", ()):
        log.warning("%s", message)
    if getattr(cfg, "show_config", False):
        sys.stderr.write(show_config_text(getattr(cfg, "exported", ())))
        sys.stderr.flush()


# --------------------------------------------------------------------------
# Documentation (included in docs/configuration.md by config.render_docs).
# --------------------------------------------------------------------------

DOCS = """\
## ini files and the config language

uwsgipy reads uWSGI's ini dialect and config language with uWSGI 2.0's
semantics (its `core/ini.c` and `core/config.c`); tests/test_ini_differential.py
checks them against the real uWSGI binary.

### Lines

- Options are read from the `[uwsgi]` section, or from `[name]` with
  `--ini file.ini:name`; `ini = :name` reads section `name` of the file read
  last. A section may appear several times; all its parts are read. A
  missing or empty section is a warning, as in uWSGI.
- A line is `key = value`, split at the first `=`; spaces and tabs around
  key and value are removed. Quotes are not special. A key without `=` has an
  empty value: true for boolean options, 666 for `chmod-socket`.
- Lines starting with `;` or `#` are comments. **There are no inline
  comments**: in `processes = 4 ; four workers` the value is
  `4 ; four workers`. uWSGI reads a number's leading digits, so uwsgipy takes
  4 (with a warning); uWSGI reads `master = false ; no` as **true** (anything
  but `false`/`off`/`no`/`0` is true), and so does uwsgipy, with a warning.
  Other values keep the text (`env = A=b ; c` sets `A` to `b ; c`).
- Keys are taken as written: `http_socket` is *not* `http-socket` in uWSGI
  ini files (it is a placeholder), so uwsgipy ignores it with a warning that
  suggests `http-socket`. (In `UWSGI_*` variables, `_` does mean `-`.)
- A key that is not an option is a **placeholder**: `project = shop` makes
  `%(project)` mean `shop`. A key that nothing uses as `%(key)` gets one
  warning naming the file, the line and the closest option
  (`app.ini:7: unknown option 'htp-socket' ignored (did you mean 'http-socket'?)`).
  `strict = true` (uWSGI's option) makes unknown keys errors; the other
  warnings below stay warnings, as in uWSGI.
- `ini = other.ini` (or `other.ini:section`) reads another file at that
  point; `include = other.ini` too, without setting the upper-case magic
  variables. A relative path is resolved against the current directory, as
  in uWSGI, and when no such file exists there, against the including file's
  directory. Only magic variables (`%d` ...) are expanded in the file name.
  Include cycles are errors.

### Magic variables

Substituted in the whole text of each file as it is read (so also inside
comments and other sections). `%` followed by any other character becomes
nothing, as in uWSGI, and a `%` at the end of a line swallows the line break.

| text | becomes |
|---|---|
| `%d` | absolute directory of the current file, with a trailing `/` |
| `%p` | its absolute path (symlinks resolved, except when the file itself is one) |
| `%o` | its path as given |
| `%s` | its file name (`app.ini`) |
| `%n` | the file name without extension (`app`) |
| `%e` | the extension without the dot (`ini`) |
| `%c` | the name of the directory holding it |
| `%0` ... `%9` | the components of its directory (`/srv/app/` gives `%0` = `srv`, `%1` = `app`) |
| `%x` | the section being read when one was named (`app.ini:prod` gives `prod`), else nothing |
| `%i` | the file's inode number |
| `%j` | uWSGI's djb33x hash of `%p`, 8 hex digits |
| `%O` `%D` `%P` `%S` `%N` `%E` `%C` `%X` `%I` `%J` | the same, of the first file read with `ini`/`--ini`/`UWSGI_INI` (nothing for a file named without `--ini`) |
| `%v` | the current directory at start-up |
| `%h` | the host name |
| `%k` | the number of online CPUs |
| `%u` `%U` | the user id and user name |
| `%g` `%G` | the group id and group name |
| `%t` `%T` | the start time, in seconds and in microseconds since the epoch |
| `%V` | the server version (uwsgipy's, not uWSGI's) |
| `%b` | the command that runs uwsgipy (uWSGI: its binary) |
| `%[` | the escape character (for ANSI colours) |
| `%%` | `%` |

### References, expanded once everything is read

After all sources are read, three passes run over every value, in this
order: `$(VAR)` is the environment variable `VAR`; `@(FILE)` is the contents
of FILE (one trailing newline removed); `%(name)` is the value of the
**first** option or placeholder called `name` anywhere (environment, command
line, any ini file, earlier or later), `name` written exactly (no `_`/`-`
equivalence), in every value but those of the language's own keys (`ini`,
`set-placeholder`, the logic options: uWSGI also leaves a few options it
applies at once, such as `listen` and `umask`, unexpanded, where uwsgipy
expands them). A reference that cannot be resolved stays as written, with a
warning (except `%(var)` in `log-format`, where uWSGI's log variables share
the syntax); an unreadable `@(FILE)` is an error. `%(...)` with spaces is
uWSGI's arithmetic, evaluated left to right on 64-bit integers: names,
numbers and `+ - * /` (`%(%k * 2 + 1)`, `%(workers + 1)`), `++`/`--`
increment, anything else concatenates. `set-placeholder = NAME=VALUE` (or
`set-ph`) defines a placeholder that can never be mistaken for an option;
`set = NAME=VALUE` sets an option or a placeholder.

### Logic blocks

`if-env`, `if-not-env` (`NAME` or `NAME=VALUE`), `if-opt`, `if-not-opt`
(an option or placeholder, as first set; `NAME=VALUE` compares), `if-exists`,
`if-not-exists`, `if-file`, `if-not-file`, `if-dir`, `if-not-dir`,
`if-hostname`, `if-not-hostname`, `if-hostname-match`, `if-plugin` (true
for `python` only), `if-reload`, `if-not-reload` apply the lines up to
`endif` when the test holds; `for = a b c`, `for-glob = PATTERN`,
`for-readline = FILE` and `for-times = N` repeat them up to `endfor`. Inside,
`%(_)` is the loop item or the value tested. The test uses the value as
written (magic variables only). As in uWSGI, blocks do not nest: an `if-*`
inside a block that applies is an error, and inside one that does not, its
`endif` closes the outer block (a warning says so). These work in ini files
(and `UWSGI_*` variables), not on the command line.

### Output

`print = TEXT` writes TEXT to stdout once the configuration is read (after
the expansions), `iprint = TEXT` at once, unexpanded. `show-config` writes
the resolved configuration in uWSGI's format to the log and goes on
starting.

### Environment and command line

Each `UWSGI_NAME` variable is the option `name` (upper case, `_` for `-`),
read first, in the environment's order; `UWSGI_INI` reads its file there. An
unknown one that nothing uses as `%(name)` gets a warning. Then the command
line, in order (`--ini` files where they stand), then config files given
without `--ini`. `$(VAR)` and `%(name)` work in command-line values too.
"""
