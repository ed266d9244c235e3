"""Issue 7 item 8: a new user's first hour.

- The README's two commands work on a stock Debian 12 / Ubuntu 24.04 Python, which refuses
  `pip install` outside a virtualenv (PEP 668): command 1 is run for real, in a fresh clone,
  with /usr/bin/python3; command 2 (scripts/test.sh, which .ci/run calls) is checked to make
  and use the same virtualenv (running it here would run this suite inside itself).
- The option reference is reachable from an installed package: `uwsgipy --help-option NAME`.
- SIGINT and SIGQUIT are a quick stop that says so in one line; a reload whose new code fails
  to import says "reload failed" and why, and the old workers go on serving.

Real processes on 127.0.0.1:0; readiness polled; only processes started here are signalled.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import child_env
from ops_helpers import REPO, OpsServer, http_get, poll
from test_master import OPS_APP, app_copy, master, set_version  # noqa: F401  (fixtures)

README = REPO / "README.md"


def uwsgipy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uwsgipy", *args], capture_output=True,
                          text=True, timeout=30, env=child_env(), cwd=str(REPO))


# ----------------------------------------------------------------------------------------------
# the README's commands
# ----------------------------------------------------------------------------------------------

def readme_blocks(heading: str) -> list:
    """The ```sh blocks of the README section whose heading starts with `heading`."""
    text = README.read_text()
    start = text.index("\n## " + heading)
    end = text.find("\n## ", start + 4)
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text[start:end if end > 0 else None],
                                          re.S)]


def try_it_command() -> str:
    """Command 1: the one-line block of "Try it" that makes the virtualenv (the block before
    it installs the prerequisites with apt-get)."""
    return next(b for b in readme_blocks("Try it") if b.startswith("python3 -m venv"))


def test_readme_commands_make_and_use_a_virtualenv():
    run = try_it_command()
    assert run == ("python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/uwsgipy "
                   "--http-socket 127.0.0.1:8000 --wsgi-file examples/hello.py"), run
    assert (REPO / "examples" / "hello.py").is_file()
    prerequisites = readme_blocks("Try it")[0]
    assert "python3-venv" in prerequisites and "python3-dev" in prerequisites
    assert readme_blocks("Run the tests") == ["./scripts/test.sh"]
    script = (REPO / "scripts" / "test.sh").read_text()
    assert '"$PYTHON" -m venv "$VENV"' in script and 'exec "$VENV/bin/python" -m pytest' in script
    code = "\n".join(l for l in script.splitlines() if not l.lstrip().startswith("#"))
    assert "pip install" not in code.replace('"$VENV/bin/python" -m pip install', ""), \
        "every pip install goes into the virtualenv"
    for package in ("python3-venv", "python3-dev", "nginx"):
        assert f"need {package}" in script
    assert ".venv/" in (REPO / ".gitignore").read_text().split()
    assert "./scripts/test.sh" in (REPO / ".ci" / "run").read_text()


STOCK_PYTHON = Path("/usr/bin/python3")


def _stock_python_problem() -> str:
    if not STOCK_PYTHON.exists():
        return "no /usr/bin/python3"
    probe = subprocess.run([str(STOCK_PYTHON), "-c", (
        "import sys, sysconfig, os, ensurepip, venv\n"
        "print(sysconfig.get_paths()['stdlib'])\n"
        "print(os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))")],
        capture_output=True, text=True)
    if probe.returncode != 0:
        return "the system Python has no venv/ensurepip (apt-get install python3-venv)"
    stdlib, headers = probe.stdout.split()
    if headers != "True":
        return "no Python.h for the system Python (apt-get install python3-dev)"
    if not (Path(stdlib) / "EXTERNALLY-MANAGED").exists():
        return "the system Python is not externally managed (not a PEP 668 distribution)"
    if shutil.which("git") is None or shutil.which("gcc") is None:
        return "git or gcc missing"
    return ""


def test_readme_try_it_command_on_the_stock_debian_python(tmp_path):
    """Command 1, word for word from the README, in a fresh clone, with the distribution's own
    Python (EXTERNALLY-MANAGED, PEP 668) first on PATH.  Before: `pip install .` failed with
    externally-managed-environment."""
    problem = _stock_python_problem()
    if problem:
        pytest.skip(problem)
    clone = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    # the README's port is fixed, the test takes a free one; `exec` so that the signals reach
    # uwsgipy as they do from a terminal
    steps = try_it_command().replace("127.0.0.1:8000", "127.0.0.1:0").split(" && ")
    script = " && ".join(steps[:-1] + ["exec " + steps[-1]])
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
           "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    srv = OpsServer([], cwd=clone, launcher=["/bin/sh", "-c", script])
    srv.env = env  # exactly this environment: no PYTHONPATH into the source tree
    try:
        srv.start(wait_ready=False)
        m = srv.wait_line(r"uwsgipy: listening on http-socket 127\.0\.0\.1:(\d+)", 300)
        srv.wait_line(r"uwsgipy: ready \(pid \d+\)", 30)
        reply = poll(lambda: (r := _get_text(int(m.group(1)))) and r, 10, "the hello reply")
        assert reply == "Hello from uwsgipy!\n"
        exe = (clone / ".venv" / "bin" / "python").resolve()
        assert exe == STOCK_PYTHON.resolve(), exe
        # Ctrl-C: the quick stop, one line, exit 0
        srv.signal(signal.SIGINT)
        assert srv.wait_exit(15) == 0, srv.output()[-3000:]
        assert srv.find(r"SIGINT: quick stop"), srv.output()[-3000:]
    finally:
        srv.stop()


def _get_text(port: int) -> str:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    except OSError:
        return ""
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------
# the option reference from the installed package
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["harakiri", "--harakiri", "-t", "UWSGI_HARAKIRI",
                                      "--help-option=harakiri"])
def test_help_option_prints_the_options_entry(spelling):
    args = [spelling] if spelling.startswith("--help-option=") else ["--help-option", spelling]
    res = uwsgipy(*args)
    assert res.returncode == 0, res.stderr
    from uwsgipy import config
    setting = config._BY_NAME["harakiri"]
    lines = res.stdout.splitlines()
    assert lines[0] == "harakiri"
    text = " ".join(res.stdout.split())
    assert " ".join(setting.help.split()) in text
    assert "command line: -t SECONDS, --harakiri SECONDS" in text
    assert "environment: UWSGI_HARAKIRI" in text and "default: 0" in text
    assert "compared with uWSGI:" in text
    assert all(len(l) <= 79 for l in lines), "wrapped for a terminal"


def test_help_option_unknown_name_is_one_line_with_the_closest_option():
    res = uwsgipy("--help-option", "harakri")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "uwsgipy: --help-option: unknown option 'harakri' (did you mean 'harakiri'"), lines
    assert lines[0].endswith("'uwsgipy --help-option all' lists every option"), lines
    res = uwsgipy("--help-option")
    assert res.returncode == 2 and "needs an option name" in res.stderr


def test_help_option_all_is_the_whole_reference_and_names_unsupported_options():
    from uwsgipy import config
    res = uwsgipy("--help-option", "all")
    assert res.returncode == 0
    assert res.stdout == config.render_docs()
    res = uwsgipy("--help-option", "emperor")
    assert res.returncode == 0 and "does not support yet" in res.stdout


def test_help_points_to_help_option_not_to_a_file_pip_does_not_install():
    res = uwsgipy("--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "uwsgipy --help-option NAME" in text and "uwsgipy --help-option all" in text
    assert "docs/configuration.md" not in text


# ----------------------------------------------------------------------------------------------
# signals: quick stops say so; a failed reload says so
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_master_quick_stop_logs_one_line(master, sig):
    srv = master(processes=2)
    srv.wait_workers(lambda k: len(k) == 2, 5, "2 workers")
    assert http_get(srv.port).ok
    mark = srv.mark()
    srv.signal(sig)
    assert srv.wait_exit(10) == 0
    name = signal.Signals(sig).name
    lines = [m.string for m in srv.find(r"quick stop", since=mark)]
    assert lines == [f"uwsgipy: {name}: quick stop (workers exit at once; requests in flight "
                     "are dropped)"], srv.output()


BROKEN = 'raise RuntimeError("first-hour: the new code is broken")\n'


@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
def test_failed_reload_says_why_and_the_old_workers_serve_on(master, app_copy, lazy):
    srv = master(*(["--lazy-apps"] if lazy else []), app=app_copy, processes=2)
    old = srv.wait_workers(lambda k: len(k) == 2, 10, "2 workers")
    assert http_get(srv.port).version == "v1"
    good = app_copy.read_text()
    app_copy.write_text(BROKEN + good)
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    failed = srv.wait_line(r"reload failed: .*old worker", 15, since=mark).string
    if not lazy:
        assert "raised RuntimeError while loading" in failed, failed
    srv.wait_line(r"RuntimeError: first-hour: the new code is broken", 5, since=mark)
    assert not srv.find(r"master \d+: reloaded", since=mark), srv.output()
    # the old workers go on serving the old code
    for _ in range(5):
        reply = http_get(srv.port)
        assert reply.ok and reply.version == "v1" and reply.pid in old, reply
    assert srv.proc.poll() is None
    # fixed: the next SIGHUP reloads
    app_copy.write_text(good)
    set_version(app_copy, "v2")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_line(r"reload: new workers serving", 15, since=mark)
    poll(lambda: http_get(srv.port).version == "v2", 10, "a reply from the fixed code")
    srv.wait_workers(lambda k: not (k & old), 15, "the old workers gone")


def test_reload_with_a_broken_config_file_changes_nothing(app_copy, tmp_path):
    """A bad value in the ini file, then `systemctl reload`: the master checks the new configuration
    before it re-executes itself.  Before: the re-executed master exited 2 on the typo, its
    workers followed it (PR_SET_PDEATHSIG) and the service was down."""
    ini = tmp_path / "app.ini"
    good = (f"[uwsgi]\nmaster = true\nprocesses = 2\nhttp-socket = 127.0.0.1:0\n"
            f"wsgi-file = {app_copy}\n")
    ini.write_text(good)
    srv = OpsServer([str(ini)]).start()
    try:
        old = srv.wait_workers(lambda k: len(k) == 2, 10, "2 workers")
        ini.write_text(good + "processes = four\n")
        mark = srv.mark()
        srv.signal(signal.SIGHUP)
        line = srv.wait_line(r"reload failed", 10, since=mark).string
        assert line == (f"uwsgipy: ERROR: reload failed: {ini}:6: option 'processes': invalid "
                        "int value 'four'; nothing changed, the workers go on serving: fix the "
                        "configuration and send SIGHUP again"), line
        for _ in range(5):
            reply = http_get(srv.port)
            assert reply.ok and reply.pid in old, reply
        assert srv.proc.poll() is None and srv.workers() == old
        ini.write_text(good)
        set_version(app_copy, "v2")
        mark = srv.mark()
        srv.signal(signal.SIGHUP)
        srv.wait_line(r"reload: new workers serving", 15, since=mark)
        poll(lambda: http_get(srv.port).version == "v2", 10, "a reply from the new code")
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------------------
# wsgi-file: any name, always the code on disk
# ----------------------------------------------------------------------------------------------

def test_wsgi_file_named_dot_wsgi_is_loaded(server_ops, tmp_path):
    """uWSGI's and mod_wsgi's convention, app.wsgi.  Before: 'is not a Python file', exit 4."""
    app = tmp_path / "app.wsgi"
    shutil.copy(OPS_APP, app)
    srv = server_ops(app)
    reply = http_get(srv.port)
    assert reply.ok and reply.version == "v1"


def test_wsgi_file_is_compiled_from_its_source_not_a_stale_pyc(server_ops, tmp_path):
    """A .pyc is trusted when its recorded mtime (whole seconds) and size match the source: an
    edit that keeps the size within the same second (a deploy, then a reload) ran the old code.
    Here the stale .pyc is made on purpose."""
    import importlib.util
    import py_compile
    app = tmp_path / "app.py"
    shutil.copy(OPS_APP, app)
    py_compile.compile(str(app), cfile=importlib.util.cache_from_source(str(app)), doraise=True)
    st = app.stat()
    set_version(app, "v9")  # the same size
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert app.stat().st_size == st.st_size
    srv = server_ops(app)
    assert http_get(srv.port).version == "v9"


@pytest.fixture
def server_ops():
    started = []

    def start(app: Path) -> OpsServer:
        srv = OpsServer(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app)])
        started.append(srv)
        return srv.start()
    yield start
    for srv in started:
        srv.stop()
