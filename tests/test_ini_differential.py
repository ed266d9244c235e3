"""Differential tests of the config language: the same files, variables and
command line resolved by the real uWSGI 2.0 (from PyPI) and by uwsgipy give
the same ``show-config`` block and the same ``print`` output, byte for byte.

uWSGI is run as ``uwsgi ARGS --show-config`` with stdin on /dev/null and no
socket option: it reads the configuration, prints the block (stderr) and the
``print`` lines (stdout), then exits 1 ("The -s/--socket option is missing")
before binding anything.  The keys used are placeholders, never uWSGI
options, so it does nothing else.  All cases run once, two at a time, in
one fixture (about 80 ms each).

Skipped when there is no ``uwsgi`` binary beside the Python running the tests
or on PATH (``pip install uwsgi``).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import pytest

from helpers import uwsgi_binary
from uwsgipy import __version__, config, ini

# The uwsgi installed beside this Python (scripts/test.sh's virtualenv), else on PATH.
UWSGI = uwsgi_binary()
pytestmark = pytest.mark.skipif(UWSGI is None, reason="the uwsgi binary is not installed "
                                "(pip install uwsgi)")

BLOCK = re.compile(rb"\n;uWSGI instance configuration\n.*?;end of configuration\n", re.S)
RUN_TIMEOUT = 20.0


@dataclass
class Case:
    """Files (name -> text, bytes, or None for a directory; a name -> target
    pair in ``links`` makes a symlink), the command line, the environment."""

    id: str
    files: Dict[str, Union[str, bytes, None]]
    args: Tuple[str, ...] = ("--ini", "app.ini")
    env: Dict[str, str] = field(default_factory=dict)
    links: Dict[str, str] = field(default_factory=dict)
    fails: bool = False  # both must refuse the configuration


def app(text: str, **kw) -> Case:
    """A case whose only file is app.ini with TEXT (after the [uwsgi] line)."""
    files = dict(kw.pop("files", {}))
    files["app.ini"] = "[uwsgi]\n" + text.lstrip("\n")
    return Case(kw.pop("id"), files, **kw)


CASES: List[Case] = [
    # -- lines -------------------------------------------------------------------------
    app("a = value ; comment\nb = value # hash\nc = a;b#c\n; comment\n  # indented\n"
        "d = x ;\n", id="no-inline-comments"),
    app("  spaced  =  v  \n\tt\t=\tv\t\n= nokey\nbare\nempty =\nk = a = b\n",
        id="spaces-and-equals"),
    Case("sections", {"app.ini": "pre = 0\n[uwsgi]\na = 1\n[ uwsgi ]\nb = 2\n[uwsgi]x\nc = 3\n"
                                 "[other]\nd = 4\n[uwsgi]\ne = 5\n"}),
    app("http_socket = x\nwsgi_file = y\nMaster = z\n", id="keys-verbatim"),
    Case("crlf", {"app.ini": b"[uwsgi]\r\na = 1\r\nb = two words \r\n"}),
    Case("named-section", {"app.ini": "[uwsgi]\na = 1\n[prod]\nb = %x\nini = :extra\n"
                                      "[extra]\nc = %x|%n\n"}, args=("--ini", "app.ini:prod")),
    Case("missing-section", {"app.ini": "[dev]\na = 1\n", "b.ini": "[uwsgi]\nb = 2\n"},
         args=("--ini", "app.ini", "--ini", "b.ini")),
    # -- magic variables ----------------------------------------------------------------
    Case("file-magic", {"conf/site/prod.v2.ini": "[uwsgi]\nv = %d|%p|%o|%s|%n|%e|%c|%x\n"},
         args=("--ini", "conf/site/prod.v2.ini")),
    Case("dir-components", {"a/b/c/d/e/f/g/h/i/j/k/l.ini": "[uwsgi]\nv = %0|%1|%2|%3|%9\n"},
         args=("--ini", "a/b/c/d/e/f/g/h/i/j/k/l.ini")),
    app("v = %i|%j\n", id="inode-and-hash"),
    Case("upper-case-magic", {"first.ini": "[uwsgi]\nv1 = %N|%S\nini = sub/second.ini\n",
                              "sub/second.ini": "[uwsgi]\nv2 = %n|%N|%D|%P|%C|%E|%X|%I|%J|%O\n"},
         args=("--ini", "first.ini")),
    Case("upper-case-magic-positional", {"pos.ini": "[uwsgi]\nv = [%N%D%P]\nini = two.ini\n",
                                         "two.ini": "[uwsgi]\nw = [%N]\n"}, args=("pos.ini",)),
    app("v = %v|%h|%k|%u|%U|%g|%G|%[x\n", id="process-magic"),
    app("v = 100%% %z%Q%1% end %(x\npct = 50%\nnext = eaten\nq = %%(pct)\nlast = x%",
        id="percent-rules"),
    Case("percent-before-utf8", {"app.ini": "[uwsgi]\nv = a%é b\n"}),
    Case("symlinked-file", {"real/app.ini": "[uwsgi]\nv = %p|%d|%n\n"},
         links={"link.ini": "real/app.ini"}, args=("--ini", "link.ini")),
    # -- placeholders -------------------------------------------------------------------
    app("project = shop\nbase = /srv/%(project)\nv = %(base)/current/%(project).log\n",
        id="custom-placeholders"),
    app("dup = one\ndup = two\nv = %(dup)\n", id="first-value-wins"),
    app("v = %(later)|%(later2)\nlater = L\nlater2 = <%(later)>\n", id="forward-references"),
    app("mine = 4\nv = %(mine)|%(from-env)\n", env={"UWSGI_MINE": "2", "UWSGI_FROM_ENV": "e"},
        id="env-placeholders-first"),
    app("v = %(nothing)|%(no_such)|%()|%(_)\n", id="unknown-placeholders"),
    app("my-name = dash\nv = %(my_name)|%(my-name)\n", id="exact-names"),
    app("emp =\na = A\nq0 = %(emp)%(a)\nq1 = x%(emp)%(a)\nq2 = %(emp)x%(a)\n",
        id="restart-quirk"),
    app("a = A\nv = %(a(b))|%(a)(b)|%((a))\n", id="parentheses"),
    app("a = %(b)\nb = %(c)c\nc = C\nv = [%(a)]\n", id="re-expansion"),
    app("v = %(cli)|%(opt)\n", args=("--set-ph", "cli=1", "--ini", "app.ini", "-S", "opt=2",
                                     "--print", "p=%(cli)"), id="command-line-placeholders"),
    app("set-placeholder = sp=$(HOME)\nset-ph = spaced = x\nset = s=%(sp)\n"
        "v = %(sp)|%(spaced)|%(spaced )|%(s)\n", env={"HOME": "/h"}, id="set-placeholder"),
    # -- arithmetic ---------------------------------------------------------------------
    app("n = 10\na = A\nv1 = %(%k * 2 + 1)\nv2 = %(3 + 4 * 2)\nv3 = %(n + 1)\n"
        "v4 = %(nothing + 1)\nv5 = %(a + 1)\nv6 = %(a a n)\nv7 = %(n * )\nv8 = %( n)\n"
        "v9 = %(+ -)\n", id="arithmetic"),
    app("n = 10\nv1 = %(n ++)\nv2 = %(n --)\nv3 = %(n / 0)\nv4 = %(0 - 7 / 2)\n"
        "v5 = %(-7 + 1)\nv6 = %(n - 20)\nv7 = %(12abc + 1)\nv8 = %(n ++ ++ + 1)\n"
        "v9 = %(9223372036854775807 + 1)\n", id="arithmetic-edges"),
    app("cores = 3\nv = %(cores * 2 + 1) workers, %(cores) threads\n", id="arithmetic-workers"),
    # -- $(VAR) and @(FILE) -----------------------------------------------------------------
    app("v1 = $(APP_HOME)/current\nv2 = $(NOPE)\nv3 = $(EMPTY)$(APP_HOME)\n"
        "v4 = x$(EMPTY)$(APP_HOME)\n",
        env={"APP_HOME": "/srv", "EMPTY": ""}, id="env-references"),
    app("a = $(X)\nv = %(a)|%(b)\nb = $(Y)\n", env={"X": "x%(b)", "Y": "$(X)"},
        id="pass-order"),
    app("v1 = [@(secret)]\nv2 = [@(crlf)]\nv3 = [@(none.txt)]\n",
        files={"secret": "s3cret\n\n", "crlf": "one\r\n", "none.txt": ""}, id="file-references"),
    app("v = %(@(secret))\n", files={"secret": "s\n"}, id="file-reference-in-placeholder"),
    # -- logic ---------------------------------------------------------------------------
    app("if-env = APP_ENV\na = %(_)\nendif =\nif-env = APP_ENV=prod\nb = yes\nendif\n"
        "if-env = APP_ENV=dev\nc = no\nendif\nifenv = NOPE\nd = no\nendif\n",
        env={"APP_ENV": "prod"}, id="if-env"),
    app("if-not-env = APP_ENV\na = no\nendif\nif-not-env = APP_ENV=dev\nb = %(_)\nendif\n"
        "if-not-env = NOPE\nc = [%(_)]\nendif\n", env={"APP_ENV": "prod"}, id="if-not-env"),
    app("speed = fast\nif-opt = speed=fast\na = %(_)\nendif\nif-opt = speed\nb = %(_)\nendif\n"
        "if-opt = later\nc = no\nendif\nlater = 1\nif-not-opt = other\nd = [%(_)]\nendif\n"
        "if-not-opt = speed=slow\ne = %(_)\nendif\n", id="if-opt"),
    app("if-exists = local.ini\na = %(_)\nendif\nif-not-exists = nope\nb = %(_)\nendif\n"
        "ifexists = nope\nc = no\nendif\nif-exists = conf.d\nd = %(_)\nendif\n",
        files={"local.ini": "[x]\n", "conf.d": None}, id="if-exists"),
    app("if-file = conf.d\na = no\nendif\nif-not-file = conf.d\nb = %(_)\nendif\n"
        "if-file = local.ini\nc = %(_)\nendif\nif-dir = conf.d\nd = %(_)\nendif\n"
        "if-not-dir = local.ini\ne = %(_)\nendif\nifdir = conf.d\nf = 1\nendif\n"
        "if-directory = local.ini\ng = no\nendif\n",
        files={"local.ini": "[x]\n", "conf.d": None}, id="if-file-dir"),
    app("if-hostname = %h\na = %(_)\nendif\nif-not-hostname = %h\nb = no\nendif\n"
        "if-not-hostname = no-such-host\nc = %(_)\nendif\n", id="if-hostname"),
    app("if-plugin = python\na = yes\nendif\nif-plugin = python3\nb = no\nendif\n"
        "ifplugin = nope\nc = no\nendif\n", id="if-plugin"),
    app("if-reload\na = no\nendif\nif-not-reload\nb = yes\nendif\n", id="if-reload"),
    app("for = a  b c\nf = [%(_)]\ng = %(_)%(_)\nendfor\nfor =\nnone = %(_)\nendfor\n",
        id="for"),
    app("for-glob = apps/*\ng = %(_)\nendfor\nfor-glob = nomatch/*.py\nn = %(_)\nendfor\n",
        files={"apps/b.py": "", "apps/a.py": "", "apps/sub": None, "apps/.hidden": ""},
        id="for-glob"),
    app("for-readline = hosts.txt\nline = [%(_)]\nendfor\n",
        files={"hosts.txt": b"one\r\ntwo words\n\nthree"}, id="for-readline"),
    app("for-readline = long.txt\nl = %(_)\nendfor\n", files={"long.txt": "x" * 1030 + "y\n"},
        id="for-readline-long-line"),
    app("for-times = 3\nt = %(_)\nendfor\nfor-times = zero\nz = %(_)\nend-for\n",
        id="for-times"),
    app("if-env = NOPE\na = 1\nif-env = HOME\nb = 2\nendif\nc = 3\nendif\nd = 4\n",
        env={"HOME": "/h"}, id="nested-in-false-block"),
    Case("unclosed-block", {"a.ini": "[uwsgi]\nif-env = NOPE\nfrom-a = 1\n",
                            "b.ini": "[uwsgi]\nfrom-b = 1\nendif\nafter = 1\n"},
         args=("--ini", "a.ini", "--ini", "b.ini")),
    app("if-env = NOPE\na = 1\nend\nb = 2\n", id="end-closes"),
    app("if-env = APP_ENV\nini = %(_).ini\nendif\n", env={"APP_ENV": "prod"},
        files={"prod.ini": "[uwsgi]\np = %n\n"}, id="include-in-block"),
    # -- includes, environment, command line, print ------------------------------------------
    Case("includes", {"conf/app.ini": "[uwsgi]\nini = common.ini\ninclude = part.ini\n"
                                      "v = %n\n",
                      "common.ini": "[uwsgi]\nc = %n|%N\n", "part.ini": "[uwsgi]\np = %n|%N\n"},
         args=("--ini", "conf/app.ini")),
    Case("uwsgi-ini-and-positional", {"env.ini": "[uwsgi]\ne = 1\nv = %(p)\n",
                                      "pos.ini": "[uwsgi]\np = 2\n"},
         args=("--set-ph", "c=3", "pos.ini"), env={"UWSGI_INI": "env.ini", "UWSGI_X_Y": "4"}),
    app("v = %(one)|%(two)\n", env={"UWSGI_ONE": "$(TWO_SRC)", "UWSGI_TWO": "%(one)!",
                                    "TWO_SRC": "t"}, id="env-values-expanded"),
    app("print = one %(later)\niprint = now %(later)\nlater = L\nprint = %(2 * 21)\n",
        args=("--print", "cli $(X)", "--ini", "app.ini"), env={"X": "x"}, id="print-iprint"),
    # -- refused by both -------------------------------------------------------------------------
    app("if-env = HOME\nif-exists = /\na = 1\nendif\n", env={"HOME": "/h"},
        id="nested-in-true-block", fails=True),
    app("v = @(missing.txt)\n", id="missing-file-reference", fails=True),
    app("strict = true\nproject = x\n", id="strict", fails=True),
    app("set-placeholder = processes=4\n", id="placeholder-named-as-option", fails=True),
    # @(...) is expanded before %(...): uWSGI opens a file called "%(f)".
    app("f = secret\nv = @(%(f))\n", files={"secret": "s\n"}, id="placeholder-in-file-reference",
        fails=True),
]


def _setup(case: Case, root: pathlib.Path) -> pathlib.Path:
    where = root / case.id
    where.mkdir()
    for name, content in case.files.items():
        path = where / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for name, target in case.links.items():
        (where / name).symlink_to(target)
    return where


def _environ(case: Case) -> Dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **case.env}


def _run_uwsgi(args, cwd, environ) -> Tuple[int, bytes, bytes]:
    # --show-config first: a logic block left open would swallow it.
    proc = subprocess.Popen([UWSGI, "--show-config", *args], cwd=cwd, env=environ,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:  # it must never get as far as serving
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def uwsgi_results(tmp_path_factory):
    """{case id: (case dir, returncode, stdout, stderr)} from the real uWSGI."""
    version = subprocess.run([UWSGI, "--version"], capture_output=True, text=True,
                             timeout=RUN_TIMEOUT).stdout.strip()
    assert version.startswith("2.0."), f"not uWSGI 2.0: {version!r}"
    root = tmp_path_factory.mktemp("uwsgi-differential")
    dirs = {case.id: _setup(case, root) for case in CASES}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case.id: pool.submit(_run_uwsgi, case.args, dirs[case.id], _environ(case))
                   for case in CASES}
        return {cid: (dirs[cid], *f.result()) for cid, f in futures.items()}


def _uwsgipy(case: Case, where: pathlib.Path, monkeypatch) -> Tuple[Optional[bytes], bytes, str]:
    """(show-config block or None if refused, print output, error)."""
    monkeypatch.chdir(where)
    printed: List[str] = []
    try:
        cfg = config.load(["--show-config", *case.args], _environ(case), out=printed.append)
    except config.ConfigError as exc:
        return None, b"", str(exc)
    assert cfg.show_config
    block = ini.show_config_text(cfg.exported).encode("utf-8", "surrogateescape")
    out = "".join(line + "\n" for line in printed).encode("utf-8", "surrogateescape")
    return BLOCK.search(block).group(0), out, ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_resolution_as_uwsgi(case, uwsgi_results, monkeypatch):
    where, returncode, their_out, their_err = uwsgi_results[case.id]
    ours, our_out, error = _uwsgipy(case, where, monkeypatch)
    theirs = BLOCK.search(their_err)
    if case.fails:
        assert theirs is None and returncode != 0, their_err.decode(errors="replace")
        assert ours is None, "uwsgipy accepted what uWSGI refuses"
        assert "\n" not in error and error.startswith(("app.ini:", "command line:")), error
        return
    assert theirs is not None, their_err.decode(errors="replace")
    assert ours == theirs.group(0)
    assert our_out == their_out


# --------------------------------------------------------------------------
# Values that differ by nature (time) or on purpose (version, binary).
# --------------------------------------------------------------------------


def test_time_version_and_binary_variables(tmp_path, monkeypatch):
    text = "[uwsgi]\nt = %t\nbig-t = %T\nthe-version = %V\nbinary = %b\n"
    (tmp_path / "app.ini").write_text(text)
    monkeypatch.chdir(tmp_path)
    before = time.time()
    _, _, err = _run_uwsgi(["--ini", "app.ini"], tmp_path, {"PATH": os.environ["PATH"]})
    theirs = dict(line.split(" = ", 1) for line in
                  BLOCK.search(err).group(0).decode().splitlines() if " = " in line)
    ours = dict(config.load(["--ini", "app.ini"], {}).exported)
    for got in (theirs, ours):
        assert before - 1 <= int(got["t"]) <= time.time() + 1
        assert int(got["big-t"]) // 1_000_000 == int(got["t"])  # microseconds, same clock
    assert theirs["the-version"].startswith("2.0.") and ours["the-version"] == __version__
    assert os.path.basename(theirs["binary"]) == "uwsgi" and os.path.exists(ours["binary"])


def test_case_count():
    """The report counts these; keep it honest."""
    assert len(CASES) >= 50
