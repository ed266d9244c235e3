"""Issue 9, the Python side: the static-map / mount settings, their validators, the mime
table, uWSGI's PCRE patterns as POSIX EREs, the ``static`` dict for the C core, loading
mounted apps, and the C core's choice of the mounted app (an in-process Server on real
127.0.0.1 sockets, for the table measured against real uWSGI 2.0.31).

The end-to-end tests (files served, nginx, Django, Flask) are tests/test_static.py and
tests/test_mount.py.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import sys
import textwrap
import threading

import pytest

from uwsgipy import _core
from uwsgipy import app as app_mod
from uwsgipy.app import AppLoadError, Mounts, load_mount, load_mounts, parse_mount
from uwsgipy.config import ConfigError, load
from uwsgipy.static import (build_static, check_regex, gzip_regex_suffixes, mime_table,
                            parse_expires, parse_expires_type, parse_map, pcre_to_ere,
                            read_mime_file, with_charset)

sys.path.insert(0, os.path.dirname(__file__))
import uwsgi_codec  # noqa: E402


def error_of(argv) -> str:
    with pytest.raises(ConfigError) as info:
        load(argv, {})
    return str(info.value)


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def test_static_and_mount_options_from_an_ini_file(tmp_path):
    ini = write(tmp_path / "app.ini", r"""
        [uwsgi]
        static-map = /static=static
        static-map = /favicon.ico=static/favicon.ico
        static-map2 = /media=/srv
        static-check = /srv/public
        static-index = index.html
        static-skip-ext = .php
        static-safe = /srv/shared
        static-expires = /srv/.*\.css$ 3600
        static-expires-uri = \.[0-9a-f]{8}\.js$ 86400
        static-expires-type = text/css=60
        static-expires-type-mtime = image/png=120
        static-gzip-all = true
        static-gzip-prefix = /srv/static
        static-gzip-suffix = .css
        static-gzip = \.(svg|json)$
        mime-file = /etc/mime.types
        offload-thread = 4
        honour-range = true
        mount = /blog=blog.py
        mount = /api=api.wsgi:app
        manage-script-name = true
        no-default-app = true
        """)
    cfg = load([str(ini)], {})
    assert cfg.static_map == ["/static=static", "/favicon.ico=static/favicon.ico"]
    assert cfg.static_map2 == ["/media=/srv"] and cfg.check_static == ["/srv/public"]
    assert cfg.static_index == ["index.html"] and cfg.static_skip_ext == [".php"]
    assert cfg.static_expires == [r"/srv/.*\.css$ 3600"]
    assert cfg.static_expires_type == ["text/css=60"]
    assert cfg.static_gzip_all is True and cfg.static_gzip_dir == ["/srv/static"]
    assert cfg.static_gzip_ext == [".css"] and cfg.static_gzip == [r"\.(svg|json)$"]
    assert cfg.mimefile == ["/etc/mime.types"] and cfg.offload_threads == 4
    assert cfg.mount == ["/blog=blog.py", "/api=api.wsgi:app"]
    assert cfg.manage_script_name is True and cfg.no_default_app is True
    assert cfg.sources["mount"] == f"{ini}:20, {ini}:21"


@pytest.mark.parametrize("line, needle", [
    ("static-map = static", "option 'static-map': expected PREFIX=DIRECTORY"),
    ("static-map = static=/srv", "option 'static-map': the URL prefix 'static' must start with '/'"),
    ("static-map = /static=", "option 'static-map': no directory or file after '='"),
    ("static-map2 = /x", "option 'static-map2': expected PREFIX=DIRECTORY"),
    (r"static-expires = \.css$", "option 'static-expires': expected 'REGEX SECONDS'"),
    (r"static-expires = \.css$ soon", "with a whole number of seconds"),
    ("static-expires = a( 60", "option 'static-expires': bad regular expression 'a('"),
    ("static-expires-uri = (?<=x)y 60", "option 'static-expires-uri': regular expression '(?<=x)y'"),
    ("static-expires-mtime = a*? 60", "lazy or possessive quantifier"),
    (r"static-expires-path-info = (a)\1 60", "backreference"),
    ("static-expires = [[:nope:]] 60", "(as POSIX '[[:nope:]]'): Invalid character class name"),
    ("static-expires-type = text/css 60", "option 'static-expires-type': expected 'TYPE=SECONDS'"),
    ("static-expires-type-mtime = css=60", "expected 'TYPE=SECONDS'"),
    ("static-gzip = ^/srv/.*", "option 'static-gzip': only a file-extension regex"),
    ("static-index = /srv/index.html", "option 'static-index': expected a file name"),
    ("static-index = ../index.html", "option 'static-index': expected a file name"),
    ("mount = /blog", "option 'mount': expected PREFIX=APP"),
    ("mount = blog=blog.py", "option 'mount': the mount point 'blog' must start with '/'"),
    ("mount = /a//b=x.py", "must be a clean path"),
    ("mount = /a=paste.ini", "paste .ini applications are not supported"),
    ("mount = /a=not a module", "is neither a Python file"),
    ("manage-script-name = maybe", "option 'manage-script-name': invalid bool value"),
])
def test_bad_values_name_the_option_and_the_line(tmp_path, line, needle):
    ini = write(tmp_path / "bad.ini", f"""
        [uwsgi]
        http-socket = :0
        {line}
        """)
    message = error_of([str(ini)])
    assert message.startswith(f"{ini}:3: option '"), message
    assert needle in message, message
    assert "\n" not in message


def test_options_still_refused_say_what_to_do():
    assert "check-static DIR" in error_of(["--check-static-docroot"])
    assert "not supported" in error_of(["--static-cache-paths", "60"])


def test_a_mount_point_twice_names_both_lines(tmp_path):
    from uwsgipy.cli import check_config
    ini = write(tmp_path / "m.ini", """
        [uwsgi]
        http-socket = 127.0.0.1:0
        mount = /a=x.py
        mount = /b=y.py
        mount = /a/=z.py
        """)
    with pytest.raises(ConfigError) as info:
        check_config(load([str(ini)], {}))
    assert str(info.value) == (f"{ini}:5: option 'mount': the mount point /a is already taken by "
                               f"mount = /a=x.py ({ini}:3)")
    ini.write_text("[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = x.py\nmount = /=y.py\n")
    with pytest.raises(ConfigError, match=r"m.ini:4: option 'mount': '/' is the main app's"):
        check_config(load([str(ini)], {}))


def test_mount_alone_is_an_application():
    from uwsgipy.cli import check_config
    cfg = load(["--http-socket", "127.0.0.1:0", "--mount", "/a=a.py"], {})
    check_config(cfg)  # no "no application configured"
    cfg = load(["--http-socket", "127.0.0.1:0"], {})
    with pytest.raises(ConfigError, match="mount = /PREFIX=APP"):
        check_config(cfg)


# --------------------------------------------------------------------------
# PCRE -> ERE
# --------------------------------------------------------------------------


@pytest.mark.parametrize("pcre, ere", [
    (r"\.css$", r"\.css$"),
    (r".*\.(js|css)$", r".*\.(js|css)$"),
    (r"/*", r"/*"),
    (r"^/static/", r"^/static/"),
    (r"\.[a-f0-9]{12,}\.(css|js)", r"\.[a-f0-9]{12,}\.(css|js)"),
    (r"\d+\.png$", r"[0-9]+\.png$"),
    (r"\w\s\D\W\S", r"[A-Za-z0-9_][[:space:]][^0-9][^A-Za-z0-9_][^[:space:]]"),
    (r"[\d_-]+", r"[0-9_-]+"),
    (r"[\w.]+", r"[A-Za-z0-9_.]+"),
    (r"[\.]css", r"[.]css"),
    (r"(?:js|css)$", r"(js|css)$"),
    (r"\Ajs\Z", r"^js$"),
    (r"\/static\/", r"/static/"),
    (r"a\|b", r"a\|b"),
    (r"x{2}?", None),
])
def test_pcre_to_ere(pcre, ere):
    if ere is None:
        with pytest.raises(ValueError, match="lazy or possessive"):
            pcre_to_ere(pcre)
    else:
        assert pcre_to_ere(pcre) == ere
        _core.check_ere(ere)


@pytest.mark.parametrize("pcre, reason", [
    (r"(?=x)", "lookaround"), (r"(?!x)", "lookaround"), (r"(?P<n>x)", "lookaround"),
    (r"a+?", "lazy"), (r"a*+", "possessive"), (r"(a)\1", "backreference"),
    (r"\bword\b", "PCRE-only"), (r"[\D]", "inside [...]"), (r"[\]]", "inside [...]"),
    ("a\\", "lone backslash"),
])
def test_pcre_only_constructs_are_refused(pcre, reason):
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")
                       .replace(".", r"\.")):
        pcre_to_ere(pcre)


def test_check_regex_uses_the_c_compiler():
    assert check_regex(r"\d{3}") == "[0-9]{3}"
    with pytest.raises(ValueError, match="Invalid character class"):
        check_regex("[[:nope:]]")  # Python's re accepts it; regcomp does not


def test_converted_patterns_match_like_python():
    import re
    names = ["/srv/static/app.css", "/srv/static/app.CSS", "/srv/x.12ab34cd.js", "a1b2", "x y"]
    for pattern in (r"\.css$", r"\.[0-9a-f]{8}\.js$", r"\d\w\d", r"\s", r"^/srv/(?:static|x)"):
        ere = re.compile(pcre_to_ere(pattern).replace("[[:space:]]", r"\s"))
        for name in names:
            assert bool(ere.search(name)) == bool(re.search(pattern, name)), (pattern, name)


def test_expires_values():
    assert parse_expires(r"/srv/.*\.css$ 3600") == (r"/srv/.*\.css$", 3600)
    assert parse_expires(r"a b\.css 60") == (r"a b\.css", 60)  # split at the last space
    assert parse_expires_type("Text/CSS=86400") == ("text/css", 86400)
    assert parse_map("/static=/srv/static/") == ("/static", "/srv/static/")
    assert parse_map("/a=b=c") == ("/a", "b=c")


def test_static_gzip_regex_forms():
    assert gzip_regex_suffixes(r"\.css$") == [".css"]
    assert gzip_regex_suffixes(r".*\.(css|js|svg)$") == [".css", ".js", ".svg"]
    assert gzip_regex_suffixes(r"^.*\.(?:css|js)$") == [".css", ".js"]
    for bad in (r"\.css", r"^/srv/static/", r".*\.css$|.*\.js$"):
        with pytest.raises(ValueError, match="static-gzip-ext"):
            gzip_regex_suffixes(bad)


# --------------------------------------------------------------------------
# Mime types
# --------------------------------------------------------------------------


def test_mime_file_first_entry_wins_and_python_fills_the_rest(tmp_path):
    one = write(tmp_path / "one.types", """
        # comment line
        text/x-first        css  FOO   # trailing comment
        application/x-dup   css
        image/webp          webp
        """)
    two = write(tmp_path / "two.types", "text/x-second foo bar\n")
    assert read_mime_file(str(one))[:2] == [("css", "text/x-first"), ("foo", "text/x-first")]
    notes = []
    table = mime_table([str(one), str(two), str(tmp_path / "missing.types")], notes)
    assert table["css"] == "text/x-first; charset=utf-8"
    assert table["foo"] == "text/x-first; charset=utf-8" and table["bar"] == "text/x-second; charset=utf-8"
    assert table["webp"] == "image/webp"
    assert table["png"] == "image/png"  # from Python's built-in table
    assert table["js"].endswith("javascript; charset=utf-8")
    assert len(notes) == 1 and "missing.types" in notes[0] and "cannot read" in notes[0]


def test_default_mime_file_missing_is_silent(tmp_path):
    notes = []
    table = mime_table([str(tmp_path / "nope")], notes, explicit=False)
    assert notes == [] and table["html"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("ctype, sent", [
    ("text/plain", "text/plain; charset=utf-8"), ("application/json", "application/json; charset=utf-8"),
    ("image/svg+xml", "image/svg+xml; charset=utf-8"), ("image/png", "image/png"),
    ("application/octet-stream", "application/octet-stream"),
    ("text/html; charset=latin-1", "text/html; charset=latin-1"),
])
def test_charset(ctype, sent):
    assert with_charset(ctype) == sent


# --------------------------------------------------------------------------
# The static dict
# --------------------------------------------------------------------------


def _cfg(argv):
    return load(["--http-socket", "127.0.0.1:0", "--wsgi-file", "x.py"] + argv, {})


def test_no_map_no_static_dict():
    assert build_static(_cfg(["--static-index", "index.html"])) is None


def test_static_dict(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    types = write(tmp_path / "my.types", "text/x-mine mine\n")
    cfg = _cfg(["--static-map2", "/m=/srv/m/", "--static-map", "/static=static",
                "--static-map", "/l=link/", "--check-static", "static",
                "--static-index", "index.html", "--static-skip-ext", ".php",
                "--static-safe", "link", "--static-gzip-dir", "static", "--static-gzip-dir", "link/",
                "--static-gzip-ext", ".css", "--static-gzip", r"\.(svg|js)$",
                "--static-expires-type-mtime", "image/png=7", "--static-expires-type", "text/css=6",
                "--static-expires-uri-mtime", r"u2 5", "--static-expires-uri", r"u1 4",
                "--static-expires-path-info", r"\d 3", "--static-expires-mtime", "f2 2",
                "--static-expires", "f1 1", "--mimefile", "my.types"])
    notes = []
    d = build_static(cfg, cwd=str(tmp_path), notes=notes)
    root = os.fsencode(str(tmp_path.resolve()))
    # check-static first, then static-map, then static-map2 (uWSGI's order); relative to the
    # cwd, symlink-free, no trailing '/'
    assert d["maps"] == [(2, b"", root + b"/static"), (0, b"/static", root + b"/static"),
                         (0, b"/l", root + b"/real"), (1, b"/m", b"/srv/m")]
    assert d["index"] == [b"index.html"] and d["skip_ext"] == [b".php"]
    assert d["safe"] == [root + b"/real"] and d["gzip_dirs"] == [root + b"/static", root + b"/real/"]
    assert d["gzip_exts"] == [b".css", b".svg", b".js"] and d["gzip_all"] is False
    # file name, PATH_INFO, REQUEST_URI, type (uWSGI's check order), plain before -mtime
    assert d["expires"] == [(0, b"f1", 1, False), (0, b"f2", 2, True), (2, b"[0-9]", 3, False),
                            (1, b"u1", 4, False), (1, b"u2", 5, True),
                            (3, b"text/css", 6, False), (3, b"image/png", 7, True)]
    mime = dict(d["mime"])
    assert mime[b"mine"] == b"text/x-mine; charset=utf-8" and mime[b"css"] == b"text/css; charset=utf-8"
    assert d["default_type"] == b"application/octet-stream"
    assert notes == ["static: /srv/m does not exist (yet): requests under /m go to the app until it does"]


def test_the_c_core_takes_the_static_dict(tmp_path):
    (tmp_path / "s").mkdir()
    d = build_static(_cfg(["--static-map", "/s=s", "--static-expires", r"\.css$ 60"]),
                     cwd=str(tmp_path))
    server = _core.Server(lambda e, s: [], [], logger=lambda *a: None, static=d)
    server.stop(graceful=False)


# --------------------------------------------------------------------------
# Loading mounted apps
# --------------------------------------------------------------------------

APP_SRC = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [NAME.encode()]
NAME = {name!r}
other = application
'''


@pytest.fixture
def apps(tmp_path, monkeypatch):
    for name in ("one", "two"):
        write(tmp_path / "a" / f"{name}.py", APP_SRC.format(name=f"a/{name}"))
    write(tmp_path / "b" / "one.py", APP_SRC.format(name="b/one"))
    write(tmp_path / "pkg_q9" / "__init__.py", "")
    write(tmp_path / "pkg_q9" / "mod.py", APP_SRC.format(name="pkg_q9.mod"))
    write(tmp_path / "raises.py", "raise RuntimeError('intentional q9')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith(("pkg_q9", "uwsgi_file_a_", "uwsgi_file_b_", "uwsgi_file_raises")):
            del sys.modules[name]


def body(app) -> str:
    return b"".join(app({}, lambda *a: None)).decode()


@pytest.mark.parametrize("value, parsed", [
    ("/a=x.py", ("/a", "file", "x.py")), ("/a/=x.wsgi", ("/a", "file", "x.wsgi")),
    ("/a=dir/app", ("/a", "file", "dir/app")), ("/=x.py", ("", "file", "x.py")),
    ("/api=pkg.mod:app", ("/api", "module", "pkg.mod:app")),
    ("/api=pkg.mod:make()", ("/api", "module", "pkg.mod:make()")),
    ("/api = pkg.mod", ("/api", "module", "pkg.mod")),
])
def test_parse_mount(value, parsed):
    assert parse_mount(value) == parsed


def test_files_and_modules_are_loaded(apps):
    assert [p for p, _ in (load_mount("/x=a/one.py"), load_mount("/y=b/one.py"))] == ["/x", "/y"]
    # two files named one.py are two modules (uWSGI's names: the path, '.' and '/' as '_')
    assert body(load_mount("/x=a/one.py")[1]) == "a/one" and body(load_mount("/y=b/one.py")[1]) == "b/one"
    assert body(load_mount("/m=pkg_q9.mod")[1]) == "pkg_q9.mod"
    assert body(load_mount("/m=pkg_q9.mod:other")[1]) == "pkg_q9.mod"
    assert body(load_mount("/f=a/two.py", callable_name="other")[1]) == "a/two"


@pytest.mark.parametrize("value, message", [
    ("/x=raises.py", "mount /x=raises.py: 'raises.py' raised RuntimeError while loading"),
    ("/x=nope_q9.py", "mount /x=nope_q9.py: no such file 'nope_q9.py'"),
    ("/x=nope_q9:app", "mount /x=nope_q9:app: no module named 'nope_q9'"),
    ("/x=pkg_q9.mod:nope", "mount /x=pkg_q9.mod:nope: module 'pkg_q9.mod' has no attribute 'nope' "
                           "(it has application: mount /x=pkg_q9.mod:NAME)"),
    ("/x=a/one.py:nope", "no such file"),
])
def test_load_errors_name_the_mount(apps, value, message):
    with pytest.raises(AppLoadError) as info:
        load_mount(value)
    assert message in str(info.value), str(info.value)
    if "raises" in value:
        assert "intentional q9" in str(info.value.__cause__)


def test_default_app_rules(apps):
    main = app_mod.load_app(wsgi_file="a/two.py")
    m = load_mounts(["/a=a/one.py", "/b=b/one.py"], main)
    assert m.default is main and [p for p, _ in m.mounts] == ["/a", "/b"]
    # no main app: the first mount is the default app (uWSGI 2.0.31)
    m = load_mounts(["/a=a/one.py", "/b=b/one.py"], None)
    assert m.default is m.mounts[0][1]
    # no-default-app: none (404); the main app keeps the requests with SCRIPT_NAME ''
    m = load_mounts(["/a=a/one.py"], None, no_default_app=True)
    assert m.default is None and [p for p, _ in m.mounts] == ["/a"]
    m = load_mounts(["/a=a/one.py"], main, no_default_app=True)
    assert m.default is None and m.mounts[-1] == ("", main)
    # mount = /=APP is the default app
    m = load_mounts(["/=b/one.py", "/a=a/one.py"], None)
    assert body(m.default) == "b/one" and [p for p, _ in m.mounts] == ["/a"]
    with pytest.raises(AppLoadError, match="'/' is the main app's"):
        load_mounts(["/=b/one.py"], main)
    with pytest.raises(AppLoadError, match="already taken by mount /a/=a/one.py"):
        load_mounts(["/a/=a/one.py", "/a=b/one.py"], main)
    wrapped = m.map(lambda a: (lambda e, s: a(e, s)))
    assert isinstance(wrapped, Mounts) and len(wrapped.mounts) == 1


def test_load_configured_app_with_mounts_only(apps):
    from uwsgipy.cli import load_configured_app
    cfg = load(["--http-socket", "127.0.0.1:0", "--mount", "/a=a/one.py", "--chdir", str(apps)], {})
    loaded = load_configured_app(cfg)
    assert isinstance(loaded, Mounts) and body(loaded.default) == "a/one"


# --------------------------------------------------------------------------
# The C core's choice (uWSGI 2.0.31's table, see /tmp/team/WIRING9.md)
# --------------------------------------------------------------------------


def _named(name):
    def application(environ, start_response):
        doc = {"app": name, "sn": environ.get("SCRIPT_NAME"), "pi": environ.get("PATH_INFO")}
        data = json.dumps(doc).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(data)))])
        return [data]
    return application


@pytest.fixture(params=[True, False], ids=["manage", "no-manage"])
def mounted(request):
    http, uw = socket.socket(), socket.socket()
    for s in (http, uw):
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        s.setblocking(False)
    server = _core.Server(
        _named("main"),
        [(http.fileno(), _core.PROTO_HTTP, "h", "80", "http"),
         (uw.fileno(), _core.PROTO_UWSGI, "h", "80", "uwsgi")],
        logger=lambda *a: None, access_log_fd=-1,
        mounts=(("/a", _named("a1")), ("/a/b", _named("a2")),
                ("/caf\xc3\xa9", _named("cafe"))),
        manage_script_name=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield request.param, http.getsockname(), uw.getsockname()
    server.stop(graceful=False)
    thread.join(5)
    http.close()
    uw.close()


def _http(addr, path):
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    doc = json.loads(data.partition(b"\r\n\r\n")[2])
    return doc["app"], doc["sn"], doc["pi"]


def _uwsgi(addr, path, sn=None, pi=None):
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path if pi is None else pi,
           "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "h"}
    if sn is not None:
        env["SCRIPT_NAME"] = sn
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(uwsgi_codec.encode_packet(env, b""))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    doc = json.loads(data.partition(b"\r\n\r\n")[2])
    return doc["app"], doc["sn"], doc["pi"]


HTTP_MANAGE = [
    ("/", ("main", "", "/")), ("/a", ("a1", "/a", "")), ("/a/", ("a1", "/a", "/")),
    ("/a/x", ("a1", "/a", "/x")), ("/ab", ("main", "", "/ab")), ("/a/b", ("a2", "/a/b", "")),
    ("/a/b/c", ("a2", "/a/b", "/c")), ("/a/bc", ("a1", "/a", "/bc")), ("/zzz", ("main", "", "/zzz")),
    ("/caf%C3%A9/x", ("cafe", "/caf\xc3\xa9", "/x")), ("/a%2Fx", ("a1", "/a", "/x")),
]


def test_http(mounted):
    manage, http, _ = mounted
    for path, expected in HTTP_MANAGE:
        if not manage:  # HTTP carries no SCRIPT_NAME: the default app, nothing split
            expected = ("main", "", expected[1] + expected[2])
        assert _http(http, path) == expected, path


def test_uwsgi_script_name_from_nginx(mounted):
    manage, _, uw = mounted
    # (path, SCRIPT_NAME sent, PATH_INFO sent) -> with manage-script-name, without it
    table = [
        (("/a/x", None, None), ("a1", "/a", "/x"), ("main", None, "/a/x")),
        (("/a/x", "/a", "/x"), ("a1", "/a", "/x"), ("a1", "/a", "/x")),
        (("/a/b/c", "/a/b", "/c"), ("a2", "/a/b", "/c"), ("a2", "/a/b", "/c")),
        (("/a/x", "/a", "/a/x"), ("a1", "/a", "/x"), ("a1", "/a", "/a/x")),
        (("/zzz", "/zzz", "/"), ("main", "/zzz", "/"), ("main", "/zzz", "/")),
        (("/a/x", "/a/", "/x"), ("main", "/a/", "/x"), ("main", "/a/", "/x")),
    ]
    for request, with_manage, without in table:
        got = _uwsgi(uw, *request)
        expected = with_manage if manage else without
        if expected[1] is None:
            expected = (expected[0], "", expected[2])  # the base environ's SCRIPT_NAME
        assert got == expected, (request, manage)


def test_no_default_app_is_a_404_app():
    from uwsgipy.app import not_found
    seen = []
    out = b"".join(not_found({}, lambda status, headers: seen.append(status)))
    assert seen == ["404 Not Found"] and b"no application is mounted" in out


def test_the_c_core_refuses_bad_mounts():
    app = _named("x")
    for bad, err in [((("a", app),), ValueError), ((("/a/", app),), ValueError),
                     ((("/a", 1),), TypeError), ((("/\u20ac", app),), ValueError),
                     ([("/a",)], TypeError), (5, TypeError)]:
        with pytest.raises(err):
            _core.Server(app, [], logger=lambda *a: None, mounts=bad)
