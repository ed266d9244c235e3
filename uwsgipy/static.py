"""The Python side of static file serving: the ``static`` dict the C core's Server takes.

uWSGI's options (core/uwsgi.c, core/static.c, core/protocol.c): ``static-map``,
``static-map2``, ``check-static``, ``static-index``, ``static-skip-ext``, ``static-safe``,
the ``static-expires*`` family, ``static-gzip*`` and ``mimefile``.  The C core
(csrc/upy_static.c) serves the files on the loop thread; Python only parses the options, reads
the mime tables and turns uWSGI's PCRE patterns into POSIX extended regular expressions
(what C's regcomp(3) compiles).

Nothing here forks or touches a socket: :func:`build_static` is testable on its own.
"""
from __future__ import annotations

import mimetypes
import os
import re
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_MIMEFILE",
    "DEFAULT_TYPE",
    "pcre_to_ere",
    "check_regex",
    "parse_map",
    "parse_expires",
    "parse_expires_type",
    "gzip_regex_suffixes",
    "read_mime_file",
    "mime_table",
    "with_charset",
    "build_static",
]

DEFAULT_MIMEFILE = "/etc/mime.types"  # uWSGI's default on Linux (core/uwsgi.c)
DEFAULT_TYPE = "application/octet-stream"  # nginx's default_type; uWSGI sends none

# Types that get "; charset=utf-8": text/* and the textual application types nginx's
# charset_types lists, plus JSON and SVG (what a browser decodes as text).
_CHARSET_TYPES = frozenset({
    "application/javascript", "application/json", "application/xml",
    "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/manifest+json", "application/ld+json", "image/svg+xml",
})


# --------------------------------------------------------------------------
# PCRE -> POSIX ERE
# --------------------------------------------------------------------------

# PCRE's class escapes as ERE bracket expressions (and as bracket contents, inside [...]).
_CLASS = {"d": ("[0-9]", "0-9"), "w": ("[A-Za-z0-9_]", "A-Za-z0-9_"),
          "s": ("[[:space:]]", "[:space:]"),
          "D": ("[^0-9]", None), "W": ("[^A-Za-z0-9_]", None), "S": ("[^[:space:]]", None)}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_ERE_SPECIAL = set(".[]()*+?{}|^$\\")


def pcre_to_ere(pattern: str) -> str:
    """uWSGI's patterns are PCRE; C compiles POSIX EREs (regcomp, REG_EXTENDED).  Most real
    ones are both already (``\\.css$``, ``.*\\.(js|css)``, ``^/static/``); this rewrites what
    ERE spells differently: ``\\d \\w \\s \\D \\W \\S`` as bracket expressions, ``(?:...)`` as
    ``(...)``, ``\\A`` / ``\\Z`` / ``\\z`` as ``^`` / ``$``, ``\\n \\t \\r`` as the characters,
    an escaped punctuation character inside ``[...]`` as itself (ERE has no escapes there).
    Raises ValueError naming what ERE cannot express: lookarounds and other ``(?`` groups,
    lazy or possessive quantifiers, backreferences, ``\\b``, negated classes inside brackets."""
    out: List[str] = []
    i, n = 0, len(pattern)
    prev_quantifier = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("the pattern ends with a lone backslash")
            e = pattern[i + 1]
            i += 2
            prev_quantifier = False
            if e in _CLASS:
                out.append(_CLASS[e][0])
            elif e in "AZz":
                out.append("^" if e == "A" else "$")
            elif e in _CONTROL:
                out.append(_CONTROL[e])
            elif e.isdigit():
                raise ValueError(f"backreference \\{e} cannot be expressed in a POSIX regular "
                                 "expression")
            elif e.isalnum() or e == "_":
                raise ValueError(f"\\{e} is PCRE-only (no POSIX extended regular expression "
                                 "equivalent)")
            elif e in _ERE_SPECIAL:
                out.append("\\" + e)
            else:
                out.append(e)  # \/ \- \= ...: the character itself
            continue
        if c == "[":
            j, body = _bracket(pattern, i)
            out.append(body)
            i = j
            prev_quantifier = False
            continue
        if c == "(" and pattern.startswith("(?", i):
            if pattern.startswith("(?:", i):
                out.append("(")
                i += 3
                prev_quantifier = False
                continue
            raise ValueError(f"'{pattern[i:i + 3]}' (a lookaround, named or flag group) is "
                             "PCRE-only: POSIX extended regular expressions have plain (...) "
                             "groups only")
        if c in "*+?" or c == "}":
            if c == "}":
                out.append(c)
                i += 1
                prev_quantifier = True
                continue
            if prev_quantifier and c in "?+":
                raise ValueError(f"the lazy or possessive quantifier '{pattern[i - 1]}{c}' is "
                                 "PCRE-only; drop the trailing '" + c + "'")
            out.append(c)
            i += 1
            prev_quantifier = True
            continue
        out.append(c)
        i += 1
        prev_quantifier = False
    return "".join(out)


def _bracket(pattern: str, start: int) -> Tuple[int, str]:
    """Convert the bracket expression at pattern[start] ('['); returns (index after it, ERE)."""
    i = start + 1
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        c = pattern[i]
        if c == "]" and not first:
            out.append("]")
            return i + 1, "".join(out)
        first = False
        if c == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end < 0:
                raise ValueError("unterminated [: :] class")
            out.append(pattern[i:end + 2])
            i = end + 2
            continue
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            i += 2
            if e in _CLASS:
                inner = _CLASS[e][1]
                if inner is None:
                    raise ValueError(f"\\{e} inside [...] cannot be expressed in a POSIX "
                                     "regular expression")
                out.append(inner)
            elif e in _CONTROL:
                out.append(_CONTROL[e])
            elif e in "]^-\\":
                raise ValueError(f"'\\{e}' inside [...] has no POSIX spelling here: put ']' "
                                 "first, '-' last or '^' not first, unescaped")
            elif e.isalnum():
                raise ValueError(f"\\{e} inside [...] is PCRE-only")
            else:
                out.append(e)
            continue
        out.append(c)
        i += 1
    raise ValueError("unterminated [...]")


def check_regex(pattern: str) -> str:
    """The ERE for uWSGI's PCRE ``pattern``, checked: by Python's re first (for a readable
    reason), then by the C core's regcomp (``_core.check_ere``).  Raises ValueError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FutureWarning about "[[" sets: ERE classes
            re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
    try:
        ere = pcre_to_ere(pattern)
    except ValueError as exc:
        raise ValueError(f"regular expression {pattern!r}: {exc}") from None
    try:
        from . import _core
        check = getattr(_core, "check_ere", None)
    except ImportError:  # the C core is not built (docs generation on a bare checkout)
        check = None
    if check is not None:
        try:
            check(ere)
        except ValueError as exc:
            raise ValueError(f"regular expression {pattern!r} (as POSIX {ere!r}): "
                             f"{str(exc).rpartition(': ')[2]}") from None
    return ere


# --------------------------------------------------------------------------
# Option values
# --------------------------------------------------------------------------


def parse_map(value: str) -> Tuple[str, str]:
    """static-map / static-map2 ``PREFIX=TARGET`` (uWSGI's uwsgi_opt_static_map: split at the
    first '='); the prefix starts with '/'.  Raises ValueError."""
    prefix, sep, target = value.partition("=")
    prefix, target = prefix.strip(), target.strip()
    if not sep:
        raise ValueError(f"expected PREFIX=DIRECTORY (e.g. /static=/srv/app/static), got {value!r}")
    if not prefix.startswith("/"):
        raise ValueError(f"the URL prefix {prefix!r} must start with '/' (e.g. /static=DIR)")
    if not target:
        raise ValueError(f"no directory or file after '=' in {value!r}")
    if "\0" in value:
        raise ValueError("a NUL byte in the value")
    return prefix, target


def _seconds(text: str, value: str, form: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"expected {form} with a whole number of seconds, got {value!r}")
    return int(text)


def parse_expires(value: str) -> Tuple[str, int]:
    """static-expires, -uri, -path-info (and -mtime): ``REGEX SECONDS`` (uWSGI splits at the
    first space; a pattern with a space in it is split at the last, which is what was meant).
    Returns (ERE, seconds); raises ValueError."""
    pattern, sep, secs = value.strip().rpartition(" ")
    if not sep or not pattern.strip():
        raise ValueError(f"expected 'REGEX SECONDS' (e.g. '\\.css$ 86400'), got {value!r}")
    seconds = _seconds(secs, value, "'REGEX SECONDS'")
    return check_regex(pattern.strip()), seconds


def parse_expires_type(value: str) -> Tuple[str, int]:
    """static-expires-type (and -mtime): ``TYPE=SECONDS`` (uWSGI's syntax, a '=' not a space:
    core/uwsgi.c uwsgi_opt_add_dyn_dict).  Returns (type, seconds); raises ValueError."""
    ctype, sep, secs = value.partition("=")
    ctype = ctype.strip().lower()
    if not sep or not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", ctype):
        raise ValueError(f"expected 'TYPE=SECONDS' (e.g. text/css=86400), got {value!r}")
    return ctype, _seconds(secs, value, "'TYPE=SECONDS'")


_SUFFIX_RE = re.compile(r"(?:\^?\.\*|\^?\.\+)?\\\.(?:([A-Za-z0-9_]+)|\((?:\?:)?((?:[A-Za-z0-9_]+\|)*[A-Za-z0-9_]+)\))\$\Z")


def gzip_regex_suffixes(pattern: str) -> List[str]:
    """uWSGI's static-gzip REGEX, when it only says "the file name ends with one of these
    extensions" (``\\.css$``, ``.*\\.(css|js)$``): the suffixes for static-gzip-ext.  Anything
    else raises ValueError (the C core matches suffixes and prefixes, not regexes)."""
    m = _SUFFIX_RE.match(pattern.strip())
    if m is None:
        raise ValueError(f"only a file-extension regex such as '\\.(css|js)$' is supported, got "
                         f"{pattern!r}: use static-gzip-ext SUFFIX or static-gzip-dir DIR")
    names = m.group(1) or m.group(2)
    return ["." + e for e in names.split("|")]


# --------------------------------------------------------------------------
# Mime types
# --------------------------------------------------------------------------


def read_mime_file(path: str) -> List[Tuple[str, str]]:
    """(extension, type) pairs of a mime.types file (``type ext ext ...`` lines, '#' comments),
    extensions lowercased without a dot.  Raises OSError."""
    pairs: List[Tuple[str, str]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) < 2 or "/" not in words[0]:
                continue
            for ext in words[1:]:
                pairs.append((ext.lstrip(".").lower(), words[0].lower()))
    return pairs


def with_charset(ctype: str) -> str:
    """The Content-Type value sent for ``ctype``: text types get ``; charset=utf-8``."""
    if ";" in ctype:
        return ctype
    if ctype.startswith("text/") or ctype in _CHARSET_TYPES:
        return ctype + "; charset=utf-8"
    return ctype


def mime_table(files: Sequence[str], notes: Optional[List[str]] = None,
               explicit: bool = True) -> Dict[str, str]:
    """ext -> Content-Type from ``files`` in order (the first entry for an extension wins,
    as uWSGI's lookup does), then Python's built-in mimetypes table for the extensions none of
    them lists (so the table is never empty).  A file that cannot be read adds one line to
    ``notes`` (uWSGI: ``!!! no FILE file found !!!``) and is skipped."""
    table: Dict[str, str] = {}
    for path in files:
        try:
            pairs = read_mime_file(path)
        except OSError as exc:
            if notes is not None and (explicit or not isinstance(exc, FileNotFoundError)):
                notes.append(f"mimefile {path}: cannot read it ({exc.strerror}); Python's "
                                "mimetypes table is used for its types")
            continue
        for ext, ctype in pairs:
            table.setdefault(ext, ctype)
    builtin = mimetypes.MimeTypes()  # the built-in table only (no system files)
    for strict in (True, False):
        for ext, ctype in builtin.types_map[strict].items():
            table.setdefault(ext.lstrip(".").lower(), ctype)
    return {ext: with_charset(ctype) for ext, ctype in table.items() if ext}


# --------------------------------------------------------------------------
# The dict for _core.Server(static=...)
# --------------------------------------------------------------------------


def _fs(path: str) -> bytes:
    return os.fsencode(path)


def _real(path: str, base: str) -> str:
    """A directory option's absolute, symlink-free form (relative to ``base``: the cwd after
    chdir, where uWSGI's workers resolve it)."""
    full = os.path.realpath(os.path.join(base, path))
    return full.rstrip("/") or "/"


def _suffix(value: str) -> bytes:
    return _fs(value.strip())


def build_static(cfg: Any, cwd: Optional[str] = None,
                 notes: Optional[List[str]] = None) -> Optional[Dict[str, Any]]:
    """The ``static`` dict of ``_core.Server`` from ``cfg``'s static options, or None when no
    map is configured (static serving then costs nothing).

    Relative targets and directories are resolved against ``cwd`` (default: the current
    directory, which is ``chdir`` once the app's path is prepared: uWSGI resolves them in the
    worker, after chdir), then made symlink-free.  Maps go in uWSGI's order: every
    check-static, then every static-map, then every static-map2, each in config order
    (core/protocol.c).  Expires rules go in uWSGI's check order (core/static.c): file name,
    PATH_INFO, REQUEST_URI, then type; within one, the plain form before -mtime.  A target
    that does not exist adds a line to ``notes``.  Values were validated by the settings
    table; a bad one raises ValueError."""
    base = cwd if cwd is not None else os.getcwd()
    maps: List[Tuple[int, bytes, bytes]] = []
    for docroot in cfg.check_static:
        maps.append((2, b"", _fs(_real(docroot, base))))
    for kind, values in ((0, cfg.static_map), (1, cfg.static_map2)):
        for value in values:
            prefix, target = parse_map(value)
            maps.append((kind, _fs(prefix), _fs(_real(target, base))))
    if not maps:
        return None
    if notes is not None:
        seen = set()
        for _, prefix, target in maps:
            if target not in seen and not os.path.exists(target):
                seen.add(target)
                notes.append(f"static: {os.fsdecode(target)} does not exist (yet): requests "
                                f"under {os.fsdecode(prefix) or '/'} go to the app until it does")
    expires: List[Tuple[int, bytes, int, bool]] = []
    for kind, plain, mtime in ((0, cfg.static_expires, cfg.static_expires_mtime),
                               (2, cfg.static_expires_path_info,
                                cfg.static_expires_path_info_mtime),
                               (1, cfg.static_expires_uri, cfg.static_expires_uri_mtime)):
        for values, is_mtime in ((plain, False), (mtime, True)):
            for value in values:
                ere, seconds = parse_expires(value)
                expires.append((kind, ere.encode("utf-8"), seconds, is_mtime))
    for values, is_mtime in ((cfg.static_expires_type, False),
                             (cfg.static_expires_type_mtime, True)):
        for value in values:
            ctype, seconds = parse_expires_type(value)
            expires.append((3, ctype.encode("latin-1"), seconds, is_mtime))
    gzip_exts = [_suffix(v) for v in cfg.static_gzip_ext]
    for value in cfg.static_gzip:
        gzip_exts.extend(_fs(s) for s in gzip_regex_suffixes(value))
    files = list(cfg.mimefile) or [DEFAULT_MIMEFILE]
    mime = mime_table([os.path.join(base, f) for f in files], notes,
                      explicit=bool(cfg.mimefile))
    return {
        "maps": maps,
        "index": [_fs(v.strip()) for v in cfg.static_index],
        "skip_ext": [_suffix(v) for v in cfg.static_skip_ext],
        "safe": [_fs(_real(v, base)) for v in cfg.static_safe],
        "expires": expires,
        "gzip_all": bool(cfg.static_gzip_all),
        # a prefix of the resolved file name (uWSGI's plain starts-with): "DIR/" keeps its '/'
        "gzip_dirs": [_fs(_real(v, base) + ("/" if v.strip().endswith("/") else ""))
                      for v in cfg.static_gzip_dir],
        "gzip_exts": gzip_exts,
        "mime": sorted((ext.encode("latin-1", "replace"), ctype.encode("latin-1", "replace"))
                       for ext, ctype in mime.items()),
        "default_type": DEFAULT_TYPE.encode("latin-1"),
    }


def describe(static: Optional[Dict[str, Any]]) -> Iterable[str]:
    """Start-up log lines for the maps (uWSGI logs ``[uwsgi-static] added mapping for ...``)."""
    if not static:
        return []
    names = {0: "static-map", 1: "static-map2", 2: "check-static"}
    return [f"{names[k]}: {os.fsdecode(p) or '/'} -> {os.fsdecode(t)}" for k, p, t in static["maps"]]
