"""Tests for uwsgipy.config: the settings table, ini loader, env and CLI."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
import typing

import pytest

import uwsgipy
from helpers import child_env
from uwsgipy import config
from uwsgipy.config import SETTINGS, Config, ConfigError, Setting, build_parser, load, render_docs

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def ini(tmp_path):
    """ini(text, name="app.ini") -> path of a file written in tmp_path."""

    def make(text: str, name: str = "app.ini") -> pathlib.Path:
        return write(tmp_path / name, text)

    return make


def error_of(argv, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load(argv, environ or {})
    return str(info.value)


# --------------------------------------------------------------------------
# The table and Config.
# --------------------------------------------------------------------------


def test_table_is_consistent():
    names = [n for s in SETTINGS for n in s.names]
    assert len(names) == len(set(names)), "an option name or alias is declared twice"
    for s in SETTINGS:
        assert isinstance(s, Setting)
        assert s.kind in config.KINDS
        if s.implemented:
            assert s.section in config.SECTIONS, s.name
            assert s.help and s.uwsgi_ref, s.name
        if s.short:
            assert len(s.short) == 2 and s.short[0] == "-", s.name
    shorts = [s.short for s in SETTINGS if s.short]
    assert len(shorts) == len(set(shorts))
    assert "-c" not in shorts  # uWSGI's -c is cgi-mode


def test_uwsgi_short_flags():
    short = {s.name: s.short for s in SETTINGS}
    assert short["socket"] == "-s"
    assert short["module"] == "-w"
    assert short["buffer-size"] == "-b"
    assert short["listen"] == "-l"
    assert short["disable-logging"] == "-L"
    assert short["chmod-socket"] == "-C"
    assert short["processes"] == "-p"
    assert short["master"] == "-M"


def test_config_annotations_match_table():
    hints = typing.get_type_hints(Config)
    for not_a_setting in ("sources", "warnings", "exported"):
        hints.pop(not_a_setting)
    implemented = {s.attr: s for s in SETTINGS if s.implemented}
    assert set(hints) == set(implemented)
    expected = {"str": (str, typing.Optional[str]), "int": (int,), "bool": (bool,),
                "list": (typing.List[str],)}
    for attr, s in implemented.items():
        assert hints[attr] in expected[s.kind], attr


def test_defaults():
    cfg = load([], {})
    assert cfg.socket == [] and cfg.http_socket == []
    assert cfg.buffer_size == 65535
    assert cfg.post_buffering == 1048576
    assert cfg.limit_post == 0
    assert cfg.listen == 100
    assert cfg.socket_timeout == 4
    assert cfg.http_keepalive == 5
    assert cfg.callable == "application"
    assert cfg.processes == 1 and cfg.threads == 1
    assert cfg.reload_mercy == 60 and cfg.worker_reload_mercy == 60
    assert cfg.master is False and cfg.need_app is True
    assert cfg.wsgi_file is None and cfg.chmod_socket is None
    assert set(cfg.sources.values()) == {"default"}
    assert set(cfg.sources) == {s.name for s in SETTINGS if s.implemented}


def test_config_lists_are_not_shared():
    a, b = Config(), Config()
    a.socket.append(":1")
    assert b.socket == []


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


def test_cli_forms():
    cfg = load(["--http-socket", ":8080", "--http-socket=127.0.0.1:8081", "-s", "/tmp/a.sock",
                "--uwsgi-socket", ":3031", "-p", "4", "--threads=2", "--master",
                "-w", "pkg.app:make", "--env", "A=1", "--env", "B=x=y", "--vacuum",
                "-L", "-b", "32768"], {})
    assert cfg.http_socket == [":8080", "127.0.0.1:8081"]
    assert cfg.socket == ["/tmp/a.sock", ":3031"]
    assert cfg.processes == 4 and cfg.threads == 2
    assert cfg.master and cfg.vacuum and cfg.disable_logging
    assert cfg.module == "pkg.app:make"
    assert cfg.env == ["A=1", "B=x=y"]
    assert cfg.buffer_size == 32768
    assert cfg.sources["processes"] == "command line"
    assert cfg.sources["listen"] == "default"


def test_cli_aliases():
    cfg = load(["--workers", "3", "--file", "app.py", "--pp", "src", "--python-path", "lib",
                "--wsgi", "mod"], {})
    assert cfg.processes == 3
    assert cfg.wsgi_file == "app.py"
    assert cfg.pythonpath == ["src", "lib"]
    assert cfg.module == "mod"


def test_cli_chmod_socket_bare_and_valued(tmp_path, ini):
    assert load(["--chmod-socket"], {}).chmod_socket == "666"
    assert load(["-C", "660"], {}).chmod_socket == "660"
    assert load(["--chmod=0600"], {}).chmod_socket == "0600"
    # A following ini file is not taken as the mode.
    path = ini("[uwsgi]\nmaster = true\n")
    cfg = load(["--chmod-socket", str(path)], {})
    assert cfg.chmod_socket == "666" and cfg.master
    assert "octal" in error_of(["--chmod-socket", "999"])


def test_cli_invalid_value():
    msg = error_of(["--processes", "abc"])
    assert msg == "command line: option 'processes': invalid int value 'abc'"
    assert "must be at least 1, got 0" in error_of(["-p", "0"])
    assert "between 1024 and 65535" in error_of(["--buffer-size", "70000"])
    assert "KEY=VALUE" in error_of(["--env", "NOEQUALS"])
    assert "port" in error_of(["--http-socket", "localhost:http"])


def test_cli_unknown_option_suggests(capsys):
    with pytest.raises(SystemExit) as info:
        load(["--htp-socket", ":80"], {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--htp-socket" in err and "did you mean '--http-socket'" in err


def test_cli_unknown_option_with_equals_suggests(capsys):
    with pytest.raises(SystemExit):
        load(["--proceses=4"], {})
    assert "did you mean '--processes'" in capsys.readouterr().err


def test_cli_no_abbreviations(capsys):
    with pytest.raises(SystemExit):
        load(["--http-sock", ":80"], {})
    assert "did you mean '--http-socket'" in capsys.readouterr().err


def test_cli_unexpected_positional(capsys):
    with pytest.raises(SystemExit):
        load(["app.py"], {})
    assert "unexpected argument 'app.py'" in capsys.readouterr().err


def test_cli_unsupported_option():
    assert error_of(["--mules", "2"]) == (
        "command line: option 'mules' is not supported by uwsgipy yet: "
        "uwsgipy has no mules: run background work as its own service (or attach-daemon)")
    assert "load balancer in front" in error_of(["--http-to", "127.0.0.1:3031"])
    assert error_of(["--check-static-docroot"]).startswith(
        "command line: option 'check-static-docroot' is not supported by uwsgipy yet")
    assert error_of(["--emperor", "/etc/uwsgi/vassals"]).startswith(
        "command line: option 'emperor' is not supported by uwsgipy yet: run one uwsgipy")
    assert error_of(["-Q", "/spool"]).startswith("command line: option 'spooler' is not")


def test_help_lists_sections_short_flags_and_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        load(["--help"], {})
    assert info.value.code == 0
    out = capsys.readouterr().out
    for section in config.SECTIONS:
        assert f"\n{section}:\n" in out
    assert "-s, --socket, --uwsgi-socket ADDR" in out
    assert "-p, --processes, --workers N" in out
    assert "-M, --master" in out
    assert "--http-socket, --http11-socket ADDR" in out
    assert "(default: 65535)" in out
    assert "(default: 100)" in out
    # Refused uWSGI options are kept out of --help.
    assert "--mules" not in out
    # Sections appear in table order.
    positions = [out.index(f"\n{section}:\n") for section in config.SECTIONS]
    assert positions == sorted(positions)


def test_help_via_build_parser():
    text = build_parser().format_help()
    assert "--log-format, --logformat FORMAT" in text and "%(addr)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        load(["--version"], {})
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"uwsgipy {uwsgipy.__version__}"
    # how the core was built, from _core.BUILD, and what runs it
    from uwsgipy import _core
    b = _core.BUILD
    assert lines[1].startswith(f"C core: {b['poller']} poller") and b["compiler"].strip() in lines[1], lines
    assert f"for CPython {b['python']} ({b['libc']})" in lines[1], lines
    assert lines[2].startswith(f"running on CPython {sys.version.split()[0]} ({sys.executable})"), lines
    assert b["poller"] in ("epoll", "poll") and isinstance(b["sendfile"], bool)


def test_importing_package_is_light():
    code = "import sys, uwsgipy; print('uwsgipy.config' in sys.modules, 'argparse' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env=child_env()).stdout.split()
    assert out == ["False", "False"]


# --------------------------------------------------------------------------
# Environment.
# --------------------------------------------------------------------------


def test_env_values_and_sources():
    env = {"UWSGI_WSGI_FILE": "app.py", "UWSGI_PROCESSES": "3", "UWSGI_MASTER": "1",
           "UWSGI_HTTP_SOCKET": ":9000", "UWSGI_NOT_AN_OPTION": "x", "PATH": "/bin",
           "UWSGI_VACUUM": ""}
    cfg = load([], env)
    assert cfg.wsgi_file == "app.py"
    assert cfg.processes == 3
    assert cfg.master is True
    assert cfg.http_socket == [":9000"]
    assert cfg.vacuum is False  # empty counts as unset
    assert cfg.sources["processes"] == "env UWSGI_PROCESSES"
    assert cfg.sources["wsgi-file"] == "env UWSGI_WSGI_FILE"


def test_env_alias():
    cfg = load([], {"UWSGI_WORKERS": "5"})
    assert cfg.processes == 5 and cfg.sources["processes"] == "env UWSGI_WORKERS"
    cfg = load([], {"UWSGI_WORKERS": "5", "UWSGI_PROCESSES": "6"})
    assert cfg.processes == 6


def test_env_errors():
    assert error_of([], {"UWSGI_PROCESSES": "abc"}) == (
        "env UWSGI_PROCESSES: option 'processes': invalid int value 'abc'")
    assert error_of([], {"UWSGI_MASTER": "maybe"}).startswith(
        "env UWSGI_MASTER: option 'master': invalid bool value 'maybe'")
    assert error_of([], {"UWSGI_MULES": "2"}).startswith(
        "env UWSGI_MULES: option 'mules' is not supported by uwsgipy yet")


def test_env_ini(ini):
    path = ini("[uwsgi]\nprocesses = 7\n")
    cfg = load([], {"UWSGI_INI": str(path)})
    assert cfg.processes == 7
    assert cfg.ini == [str(path)]
    assert cfg.sources["ini"] == "env UWSGI_INI"


# --------------------------------------------------------------------------
# Precedence: defaults < env < ini < command line.
# --------------------------------------------------------------------------


def test_precedence(ini):
    path = ini("""
        [uwsgi]
        processes = 2
        threads = 3
        http-socket = :1000
        http-socket = :1001
    """)
    env = {"UWSGI_PROCESSES": "1", "UWSGI_THREADS": "9", "UWSGI_LISTEN": "50",
           "UWSGI_HTTP_SOCKET": ":999"}
    cfg = load([str(path), "--processes", "4"], env)
    assert cfg.processes == 4 and cfg.sources["processes"] == "command line"
    assert cfg.threads == 3 and cfg.sources["threads"] == f"{path}:3"
    assert cfg.listen == 50 and cfg.sources["listen"] == "env UWSGI_LISTEN"
    # uWSGI reads the environment first, then the file: a list collects both.
    assert cfg.http_socket == [":999", ":1000", ":1001"]
    assert cfg.sources["http-socket"] == f"env UWSGI_HTTP_SOCKET, {path}:4, {path}:5"
    assert cfg.buffer_size == 65535 and cfg.sources["buffer-size"] == "default"


def test_higher_source_replaces_list(ini):
    path = ini("[uwsgi]\nhttp-socket = :1000\nsocket = :3031\n")
    cfg = load([str(path), "--http-socket", ":2000"], {})
    assert cfg.http_socket == [":2000"]
    assert cfg.socket == [":3031"]


def test_cli_bool_overrides_ini_only_upwards(ini):
    path = ini("[uwsgi]\nmaster = false\n")
    assert load([str(path), "--master"], {}).master is True
    assert load([str(path)], {"UWSGI_MASTER": "true"}).master is False


# --------------------------------------------------------------------------
# ini files.
# --------------------------------------------------------------------------


def test_ini_basic_rules(ini):
    path = ini("""
        ; a comment
        # another comment
        ignored_before_any_section = 1
        [other]
        processes = 99
        [uwsgi]
          socket   =   127.0.0.1:3031
        env = DJANGO_SETTINGS_MODULE=site.settings
        env = A= b ; not a comment
        processes = 2
        processes = 3
        master
        vacuum = ON
        lazy-apps = Yes
        disable-logging = 0
        http-socket = :8080
    """)
    cfg = load(["--ini", str(path)], {})
    assert cfg.socket == ["127.0.0.1:3031"]
    assert cfg.env == ["DJANGO_SETTINGS_MODULE=site.settings", "A= b ; not a comment"]
    assert cfg.processes == 3 and cfg.sources["processes"] == f"{path}:11"
    assert cfg.master is True and cfg.vacuum is True and cfg.lazy_apps is True
    assert cfg.disable_logging is False
    assert cfg.http_socket == [":8080"]
    assert cfg.warnings == [f"{path}:9: option 'env': '; not a comment' is part of the value "
                            "(uWSGI ini files have no inline comments)"]
    assert cfg.ini == [str(path)]
    assert cfg.sources["ini"] == "command line"


def test_ini_split_at_first_equals(ini):
    path = ini("[uwsgi]\nenv = KEY=a=b\nlog-format = x=%(status)\n")
    cfg = load([str(path)], {})
    assert cfg.env == ["KEY=a=b"]
    assert cfg.log_format == "x=%(status)"


def test_ini_bare_and_empty_values(ini):
    path = ini("[uwsgi]\nchmod-socket\nmaster =\n")
    cfg = load([str(path)], {})
    assert cfg.chmod_socket == "666" and cfg.master is True
    msg = error_of([str(ini("[uwsgi]\n\nsocket\n", "bare.ini"))])
    assert msg.endswith("bare.ini:3: option 'socket' needs a value (socket = ...)")


def test_ini_section_appears_twice(ini):
    path = ini("[uwsgi]\nsocket = :1\n[x]\nsocket = :2\n[uwsgi]\nsocket = :3\n")
    assert load([str(path)], {}).socket == [":1", ":3"]


def test_ini_named_section(ini):
    path = ini("[uwsgi]\nprocesses = 1\n[prod]\nprocesses = 8\n")
    cfg = load([f"{path}:prod"], {})
    assert cfg.processes == 8
    assert cfg.sources["processes"] == f"{path}:4"
    assert cfg.ini == [f"{path}:prod"]
    assert load(["--ini", f"{path}:prod"], {}).processes == 8


def test_ini_missing_section_warns_as_uwsgi(ini):
    # uWSGI: "*** WARNING: Can't find section ..." and it goes on.
    path = ini("[dev]\nprocesses = 1\n[prod]\nprocesses = 2\n")
    assert load([str(path)], {}).warnings == [
        f"{path}: no [uwsgi] section (sections found: [dev], [prod]); nothing read from it"]
    assert load([f"{path}:stage"], {}).warnings[0].startswith(f"{path}: no [stage] section")
    empty = ini("processes = 1\n", "nosect.ini")
    assert load([str(empty)], {}).warnings == [
        f"{empty}: no [uwsgi] section (the file has no sections); nothing read from it"]
    # strict refuses only keys that are not options, as uWSGI's: this stays a warning
    assert load([str(empty), "--strict"], {}).warnings[0].endswith("nothing read from it")


def test_ini_missing_file(tmp_path):
    missing = tmp_path / "nope.ini"
    assert error_of([str(missing)]) == f"command line: ini file '{missing}' not found"
    assert error_of([f"{missing}:prod"]) == f"command line: ini file '{missing}' not found"
    assert error_of(["--ini", str(tmp_path)]).endswith("is a directory")


def test_ini_shorthand_and_repeated_ini(ini):
    a = ini("[uwsgi]\nsocket = :1\nprocesses = 2\n", "a.ini")
    b = ini("[uwsgi]\nsocket = :2\nprocesses = 3\n", "b.ini")
    cfg = load([str(a), "--ini", str(b)], {})
    # uWSGI reads files named without --ini after every option.
    assert cfg.socket == [":2", ":1"]  # lists append across files
    assert cfg.processes == 2  # last read wins
    assert cfg.ini == [str(b), str(a)]
    cfg = load(["--ini", str(a), "--ini", str(b), "--master"], {})
    assert cfg.socket == [":1", ":2"] and cfg.master


def test_ini_unknown_key_warns_and_suggests(ini):
    path = ini("[uwsgi]\nmaster = true\n\n\n\n\nhtp-socket = :80\n")
    assert load([str(path)], {}).warnings == [
        f"{path}:7: unknown option 'htp-socket' ignored (did you mean 'http-socket'?)"]
    assert error_of([str(path), "--strict"]).startswith(
        f"{path}:7: unknown option 'htp-socket' (did you mean 'http-socket'?)")
    path = ini("[uwsgi]\nmy_base_dir = /srv\n", "custom.ini")
    assert load([str(path)], {}).warnings == [
        f"{path}:2: unknown option 'my_base_dir' ignored (no option is called so, and "
        "nothing uses %(my_base_dir))"]
    # A placeholder something uses is not a mistake.
    path = ini("[uwsgi]\nmy_base_dir = /srv\nchdir = %(my_base_dir)/app\n", "used.ini")
    cfg = load([str(path)], {})
    assert cfg.chdir == "/srv/app" and cfg.warnings == []
    # ... except with strict, which allows only options (as uWSGI's).
    assert "set-placeholder" in error_of([str(path), "--strict"])


def test_ini_unsupported_option(ini):
    path = ini("[uwsgi]\nmaster = true\nmules = 2\n")
    assert error_of([str(path)]) == (
        f"{path}:3: option 'mules' is not supported by uwsgipy yet: "
        "uwsgipy has no mules: run background work as its own service (or attach-daemon)")
    path = ini("[uwsgi]\nhttp-to = 127.0.0.1:3031\n", "router.ini")
    assert "load balancer in front" in error_of([str(path)])
    path = ini("[uwsgi]\nemperor = /etc/uwsgi/vassals\n", "emperor.ini")
    assert error_of([str(path)]).startswith(
        f"{path}:2: option 'emperor' is not supported by uwsgipy yet")


def test_ini_invalid_values_name_file_and_line(ini):
    path = ini("[uwsgi]\nmaster = true\nprocesses = abc\n")
    assert error_of([str(path)]) == f"{path}:3: option 'processes': invalid int value 'abc'"
    path = ini("[uwsgi]\nmaster = maybe\n", "b.ini")
    assert error_of([str(path)]).startswith(f"{path}:2: option 'master': invalid bool value 'maybe'")
    path = ini("[uwsgi]\nworkers = 0\n", "c.ini")
    assert error_of([str(path)]) == f"{path}:2: option 'workers': must be at least 1, got 0"
    path = ini("[uwsgi]\nenv = FOO\n", "d.ini")
    assert error_of([str(path)]).startswith(f"{path}:2: option 'env': expected KEY=VALUE")
    path = ini("[uwsgi]\nbuffer-size = 512\n", "e.ini")
    assert "e.ini:2: option 'buffer-size': must be between 1024 and 65535" in error_of([str(path)])
    path = ini("[uwsgi]\nmodule = app.py\n", "f.ini")
    assert "wsgi-file" in error_of([str(path)])


def test_ini_bool_words(ini):
    for word, expected in [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                           ("On", True), ("false", False), ("0", False), ("no", False),
                           ("OFF", False)]:
        path = ini(f"[uwsgi]\nmaster = {word}\n")
        assert load([str(path)], {}).master is expected, word


def test_ini_underscore_keys_are_placeholders_as_in_uwsgi(ini):
    # uWSGI looks ini keys up as written: http_socket is not http-socket.
    path = ini("[uwsgi]\nwsgi_file = app.py\nhttp_socket = :80\nlogto = %(wsgi_file).log\n")
    cfg = load([str(path)], {})
    assert cfg.wsgi_file is None and cfg.http_socket == []
    assert cfg.logto == "app.py.log"
    assert cfg.warnings == [
        f"{path}:3: unknown option 'http_socket' ignored (did you mean 'http-socket'? uWSGI "
        "reads 'http_socket' as a placeholder: ini keys are written with '-')"]


def test_ini_aliases(ini):
    path = ini("[uwsgi]\nuwsgi-socket = :3031\nworkers = 4\nfile = app.py\npp = src\nchmod = 660\n"
               "logformat = %(method) %(uri)\n")
    cfg = load([str(path)], {})
    assert cfg.socket == [":3031"] and cfg.processes == 4
    assert cfg.wsgi_file == "app.py" and cfg.pythonpath == ["src"]
    assert cfg.chmod_socket == "660"
    assert cfg.log_format == "%(method) %(uri)"


def test_ini_bom_and_crlf(tmp_path):
    path = tmp_path / "win.ini"
    path.write_bytes(b"\xef\xbb\xbf[uwsgi]\r\nprocesses = 2\r\nmaster\r\n")
    cfg = load([str(path)], {})
    assert cfg.processes == 2 and cfg.master


def test_plugins_python_accepted(ini):
    path = ini("[uwsgi]\nplugins = python3\nplugin = python\nplugins = python311,python3\n"
               "plugin = 0:python3\nmodule = app\n")
    cfg = load([str(path)], {})
    assert cfg.module == "app"
    assert cfg.plugins == ["python3", "python", "python311,python3", "0:python3"]
    assert load(["--plugins", "python3"], {}).plugins == ["python3"]


def test_plugins_other_refused(ini):
    path = ini("[uwsgi]\nplugins = python3,router_cache\n")
    msg = error_of([str(path)])
    assert msg.startswith(f"{path}:2: option 'plugins': plugin 'router_cache' is not supported")


def test_compat_options_accepted(ini):
    path = ini("""
        [uwsgi]
        strict = true
        enable-threads = true
        single-interpreter = true
        need-app = true
        die-on-term = true
    """)
    cfg = load([str(path), "-T", "-i"], {})
    assert cfg.strict and cfg.enable_threads and cfg.single_interpreter
    assert cfg.need_app and cfg.die_on_term


def test_realistic_production_ini(ini, tmp_path):
    path = ini("""
        [uwsgi]
        strict = true
        master = true
        enable-threads = true
        vacuum = true
        single-interpreter = true
        die-on-term = true
        need-app = true
        plugins = python3
        chdir = %d
        module = mysite.wsgi:application
        socket = %d%n.sock
        chmod-socket = 660
        disable-logging = true
        log-4xx = true
        log-5xx = true
        harakiri = 60
        max-requests = 1000
        max-worker-lifetime = 3600
        reload-on-rss = 2048
        worker-reload-mercy = 60
        processes = 4
        threads = 2
        touch-reload = %p
    """, "mysite.ini")
    cfg = load([str(path)], {})
    d = str(tmp_path) + "/"
    assert cfg.chdir == d
    assert cfg.socket == [d + "mysite.sock"]
    assert cfg.touch_reload == [str(path)]
    assert (cfg.harakiri, cfg.max_requests, cfg.reload_on_rss) == (60, 1000, 2048)
    assert cfg.log_4xx and cfg.log_5xx and cfg.disable_logging


# -- magic variables ----------------------------------------------------------


def test_magic_variables(tmp_path):
    path = write(tmp_path / "conf" / "site.ini", """
        [uwsgi]
        chdir = %d
        pidfile = %p
        logto = /var/log/%n.log
        procname-prefix = %s
        daemonize = %e
        stats = /run/%c/%n.stats
        log-format = 100%% %(status) %x%z
    """)
    cfg = load([str(path)], {})
    d = str(tmp_path / "conf")
    assert cfg.chdir == d + "/"
    assert cfg.pidfile == str(path)
    assert cfg.logto == "/var/log/site.log"
    assert cfg.procname_prefix == "site.ini"
    assert cfg.daemonize == "ini"
    assert cfg.stats == "/run/conf/site.stats"
    # log variables are kept; %x (no section named) and unknown letters are "".
    assert cfg.log_format == "100% %(status)"


def test_magic_variables_relative_path(tmp_path, monkeypatch):
    write(tmp_path / "app.ini", "[uwsgi]\nchdir = %d\npidfile = %p\n")
    monkeypatch.chdir(tmp_path)
    cfg = load(["app.ini"], {})
    assert cfg.chdir == str(tmp_path) + "/"
    assert cfg.pidfile == str(tmp_path / "app.ini")
    assert cfg.sources["chdir"] == "app.ini:2"


def test_option_placeholders(ini):
    path = ini("""
        [uwsgi]
        chdir = /srv/app
        pythonpath = %(chdir)/src
        set-placeholder = logdir=/var/log/app
        set-ph = name = api
        logto = %(logdir)/%(name).log
        workers = 3
        procname-prefix = w%(processes)-%(workers)-
    """)
    cfg = load([str(path)], {})
    assert cfg.pythonpath == ["/srv/app/src"]
    # uWSGI keeps the spaces: the placeholder is "name " and %(name) is unknown.
    assert cfg.logto == "/var/log/app/%(name).log"
    # %(name) is the option as spelled: "workers" is set, "processes" is not.
    assert cfg.procname_prefix == "w%(processes)-3-"
    assert cfg.set_placeholder == ["logdir=/var/log/app", "name = api"]
    assert len(cfg.warnings) == 2 and "unknown placeholder '%(name)'" in cfg.warnings[0]


def test_placeholder_from_earlier_file_env_and_cli(ini):
    a = ini("[uwsgi]\nchdir = /srv\n", "a.ini")
    b = ini("[uwsgi]\nlogto = %(chdir)/%(foo)/%(base)/%(threads).log\n", "b.ini")
    cfg = load([str(a), str(b), "--set-placeholder", "base=cli"],
               {"UWSGI_FOO": "envfoo", "UWSGI_THREADS": "2"})
    assert cfg.logto == "/srv/envfoo/cli/2.log"


def test_placeholder_may_be_set_after_use(ini):
    # uWSGI expands %(name) once everything is read.
    path = ini("[uwsgi]\npythonpath = %(chdir)/src\nchdir = /srv\n")
    assert load([str(path)], {}).pythonpath == ["/srv/src"]
    path = ini("[uwsgi]\npythonpath = %(nothing)/src\n", "b.ini")
    assert load([str(path)], {}).warnings == [
        f"{path}:2: option 'pythonpath': unknown placeholder '%(nothing)' stays as written "
        "(as in uWSGI); set it with 'name = value' or set-placeholder"]


def test_env_expansion(ini):
    path = ini("[uwsgi]\nchdir = $(APP_HOME)/current\nlogto = $(APP_HOME)-$(NAME).log\n")
    cfg = load([str(path)], {"APP_HOME": "/srv/app", "NAME": "x"})
    assert cfg.chdir == "/srv/app/current"
    assert cfg.logto == "/srv/app-x.log"


def test_env_expansion_unset_warns(ini):
    path = ini("[uwsgi]\nmaster = true\nchdir = $(APP_HOME)/current\n")
    cfg = load([str(path)], {})
    assert cfg.chdir == "$(APP_HOME)/current"  # as uWSGI
    message = (f"{path}:3: option 'chdir': environment variable 'APP_HOME' is not set, so "
               "'$(APP_HOME)' stays as written (as in uWSGI)")
    assert cfg.warnings == [message]
    assert load([str(path), "--strict"], {}).warnings == [message]  # strict: only unknown keys


def test_expansion_is_single_pass(ini):
    path = ini("[uwsgi]\nset-placeholder = a=%%(b)\nchdir = %(a)$(X)\n")
    cfg = load([str(path)], {"X": "%(zzz)"})
    assert cfg.chdir == "%(b)%(zzz)"


def test_magic_in_values_converted_after_expansion(ini):
    path = ini("[uwsgi]\nset-placeholder = n=4\nprocesses = %(n)\nthreads = $(T)\n")
    cfg = load([str(path)], {"T": "8"})
    assert cfg.processes == 4 and cfg.threads == 8


# -- includes ----------------------------------------------------------------------


def test_include_relative_to_including_file(tmp_path, monkeypatch):
    write(tmp_path / "conf" / "base.ini", "[uwsgi]\nmaster = true\nprocesses = 2\nsocket = :2\n"
                                          "chdir = %d\n")
    main = write(tmp_path / "conf" / "main.ini",
                 "[uwsgi]\nsocket = :1\nini = base.ini\nprocesses = 5\nsocket = :3\n")
    monkeypatch.chdir(tmp_path)  # the include must not resolve against the cwd
    cfg = load([str(main)], {})
    assert cfg.master is True
    assert cfg.processes == 5  # the line after the include wins
    assert cfg.socket == [":1", ":2", ":3"]  # included lines land at the include point
    base = str(tmp_path / "conf" / "base.ini")
    assert cfg.ini == [str(main), base]
    assert cfg.chdir == str(tmp_path / "conf") + "/"
    assert cfg.sources["master"] == f"{base}:2"


def test_include_with_section_and_magic(tmp_path):
    write(tmp_path / "common.ini", "[shared]\nthreads = 4\n")
    main = write(tmp_path / "sub" / "app.ini", "[uwsgi]\nini = %d../common.ini:shared\n")
    assert load([str(main)], {}).threads == 4


def test_include_cycle(tmp_path):
    a = write(tmp_path / "a.ini", "[uwsgi]\nini = b.ini\n")
    write(tmp_path / "b.ini", "[uwsgi]\nmaster = true\nini = a.ini\n")
    msg = error_of([str(a)])
    assert msg.startswith(f"{tmp_path / 'b.ini'}:3: ini include cycle: ")
    assert msg.endswith(f"{tmp_path / 'a.ini'} -> {tmp_path / 'b.ini'} -> {tmp_path / 'a.ini'}")


def test_self_include_is_a_cycle(tmp_path):
    a = write(tmp_path / "a.ini", "[uwsgi]\nini = %p\n")
    assert "ini include cycle" in error_of([str(a)])


def test_same_file_included_twice_is_not_a_cycle(tmp_path):
    write(tmp_path / "common.ini", "[uwsgi]\nsocket = :1\n")
    main = write(tmp_path / "main.ini", "[uwsgi]\nini = common.ini\nini = common.ini\n")
    assert load([str(main)], {}).socket == [":1", ":1"]


def test_include_missing_names_including_line(tmp_path):
    main = write(tmp_path / "main.ini", "[uwsgi]\nmaster = true\nini = gone.ini\n")
    assert error_of([str(main)]) == (
        f"{main}:3: ini file 'gone.ini' not found (neither in the current directory nor "
        f"in {tmp_path}/; %d names the including file's directory)")


def test_error_inside_include_names_included_file(tmp_path):
    write(tmp_path / "base.ini", "[uwsgi]\nprocesses = many\n")
    main = write(tmp_path / "main.ini", "[uwsgi]\nini = base.ini\n")
    assert error_of([str(main)]) == (
        f"{tmp_path / 'base.ini'}:2: option 'processes': invalid int value 'many'")


# --------------------------------------------------------------------------
# Documentation.
# --------------------------------------------------------------------------


def test_docs_are_current():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_docs(), (
        "docs/configuration.md is stale: python -m uwsgipy.config > docs/configuration.md")


def test_docs_cover_every_option():
    text = render_docs()
    for s in SETTINGS:
        if s.implemented:
            assert f"### `{s.name}`" in text
            for var in s.env_vars:
                assert var in text
        else:
            assert f"`{s.name}`" in text


# --------------------------------------------------------------------------
# App runners: threads, gevent (uwsgipy.worker.runner_for / check_runner).
# --------------------------------------------------------------------------


def test_runner_settings_from_every_source(ini):
    cfg = load([], {})
    assert (cfg.gevent, cfg.gevent_monkey_patch, cfg.gevent_early_monkey_patch) == (0, False, False)
    path = ini("""
        [uwsgi]
        gevent = 100
        gevent-early-monkey-patch = true
        """)
    cfg = load([str(path)], {"UWSGI_GEVENT_MONKEY_PATCH": "1"})
    assert cfg.gevent == 100 and cfg.sources["gevent"] == f"{path}:2"
    assert cfg.gevent_early_monkey_patch and cfg.gevent_monkey_patch
    assert load(["--gevent", "8"], {}).gevent == 8
    assert error_of(["--gevent", "-1"]) == "command line: option 'gevent': must be at least 0, got -1"
    # uWSGI's async engines that are not gevent stay refused, pointing at gevent
    assert "use gevent = N" in error_of(["--async", "10"])
    assert "use gevent = N" in error_of(["--ugreen"])


def test_runner_for_each_setting():
    from uwsgipy.worker import runner_for
    r = runner_for(load([], {}))
    assert (r.name, r.cores, r.multithread, r.gevent) == ("inline", 1, False, False)
    r = runner_for(load(["--threads", "4"], {}))
    assert (r.name, r.cores, r.multithread, r.gevent) == ("threads", 4, True, False)
    r = runner_for(load(["--gevent", "8", "--gevent-monkey-patch"], {}))
    assert (r.name, r.cores, r.multithread, r.gevent, r.monkey_patch) == \
        ("external", 8, True, True, True)
    assert r.describe() == "gevent (8 greenlets)"


def test_gevent_with_threads_is_one_line_naming_both(ini):
    from uwsgipy.worker import check_runner
    path = ini("""
        [uwsgi]
        threads = 4
        """)
    cfg = load([str(path), "--gevent", "8"], {})
    assert check_runner(cfg) == (
        f"command line: option 'gevent' cannot be used with threads = 4 ({path}:2): a worker "
        "runs its app in either a pool of threads or gevent greenlets; remove one")
    assert check_runner(load(["--gevent", "8", "--threads", "1"], {})) is None


@pytest.mark.parametrize("option", ["gevent-monkey-patch", "gevent-early-monkey-patch"])
def test_monkey_patch_without_gevent_is_refused(ini, option):
    from uwsgipy.worker import check_runner
    path = ini(f"""
        [uwsgi]
        threads = 2
        {option} = true
        """)
    assert check_runner(load([str(path)], {})) == (
        f"{path}:3: option '{option}' needs gevent = N: it prepares the standard library for "
        "greenlets, and only the gevent runner runs them")


def _uwsgipy(*args: str, pre: str = "") -> subprocess.CompletedProcess:
    """`uwsgipy ARGS` in a fresh interpreter (pre: Python run first), as a user starts it."""
    code = f"import sys\n{pre}\nfrom uwsgipy.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, env=child_env())


def test_runner_mistakes_stop_start_up_with_one_line():
    app = str(ROOT / "tests" / "apps" / "env_app.py")
    base = ["--http-socket", "127.0.0.1:0", "--wsgi-file", app]
    p = _uwsgipy(*base, "--threads", "4", "--gevent", "8")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "uwsgipy: ERROR: command line: option 'gevent' cannot be used with threads = 4 (command "
        "line): a worker runs its app in either a pool of threads or gevent greenlets; remove one"]
    # gevent missing from this Python: the option is named, no traceback
    p = _uwsgipy(*base, "--gevent", "8", pre="sys.modules['gevent'] = None  # as if not installed")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"uwsgipy: ERROR: command line: option 'gevent': the gevent package is not installed for "
        f"{sys.executable} (pip install gevent)"]
