"""uWSGI's config language in uwsgipy.ini, rule by rule (no server).

Each expectation is what uWSGI 2.0 does (checked against the real binary in
tests/test_ini_differential.py); deliberate differences say DEVIATION.
"""

from __future__ import annotations

import grp
import logging
import os
import pathlib
import pwd
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import child_env
from uwsgipy import __version__, config, ini
from uwsgipy.config import ConfigError, load

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A temporary directory that is also the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def resolve(text: str, *args: str, env=None, name: str = "app.ini", out=None):
    """(exported options as a dict of lists, Config) for one ini text in the cwd."""
    write(pathlib.Path(name), text)
    printed: list = [] if out is None else out
    cfg = load(["--ini", name, *args], env or {}, out=printed.append)
    exported: dict = {}
    for key, value in cfg.exported:
        exported.setdefault(key, []).append(value)
    return exported, cfg


def value(text: str, key: str = "v", **kw) -> str:
    exported, _ = resolve(text, **kw)
    return exported[key][0]


def error_of(text: str, *args: str, env=None) -> str:
    write(pathlib.Path("app.ini"), text)
    with pytest.raises(ConfigError) as info:
        load(["--ini", "app.ini", *args], env or {}, out=lambda s: None)
    return str(info.value)


# --------------------------------------------------------------------------
# Lines.
# --------------------------------------------------------------------------


def test_no_inline_comments_the_text_is_the_value(here):
    exported, cfg = resolve("""
        [uwsgi]
        a = value ; comment
        b = value # hash
        c = a;b#c
        ; whole-line comment
          # indented whole-line comment
        env = A=b ; c
    """)
    assert exported["a"] == ["value ; comment"]
    assert exported["b"] == ["value # hash"]
    assert exported["c"] == ["a;b#c"]
    assert cfg.env == ["A=b ; c"]
    assert "app.ini:7: option 'env': '; c' is part of the value" in cfg.warnings[-1]


def test_inline_comment_after_a_number_bool_or_port_reads_as_uwsgi(here):
    _, cfg = resolve("""
        [uwsgi]
        processes = 4 ; four workers
        harakiri = 30 # seconds
        master = false ; uWSGI reads this as true
        vacuum = true ; on
        http-socket = 127.0.0.1:8000 ; public
        socket = /tmp/app.sock ; kept
    """)
    assert cfg.processes == 4 and cfg.harakiri == 30
    assert cfg.master is True and cfg.vacuum is True  # uWSGI: not exactly "false"
    assert cfg.http_socket == ["127.0.0.1:8000"]
    assert cfg.socket == ["/tmp/app.sock ; kept"]  # uWSGI creates that very path
    assert cfg.warnings[0] == ("app.ini:2: option 'processes': '; four workers' is not a "
                               "comment (uWSGI ini files have none); 4 is used, as uWSGI "
                               "reads the leading number")
    assert cfg.warnings[2] == ("app.ini:4: option 'master': uWSGI ini files have no inline "
                               "comments and uWSGI reads 'false ; uWSGI reads this as true' "
                               "as true; so does uwsgipy (remove '; uWSGI reads this as true')")
    assert len(cfg.warnings) == 6
    # a real deployment sets strict beside '; comments': uWSGI starts it, so does uwsgipy
    _, strict_cfg = resolve("[uwsgi]\nprocesses = 4 ; x\n", "--strict")
    assert strict_cfg.processes == 4 and len(strict_cfg.warnings) == 1


def test_keys_are_taken_as_written(here):
    exported, cfg = resolve("""
        [uwsgi]
        http_socket = :80
          spaced key	 =	 spaced value\t
        = no key
        bare
    """)
    assert cfg.http_socket == []  # uWSGI: a placeholder, not http-socket
    assert exported["spaced key"] == ["spaced value"]
    assert exported[""] == ["no key"]
    assert exported["bare"] == [""]
    assert cfg.warnings[0] == (
        "app.ini:2: unknown option 'http_socket' ignored (did you mean 'http-socket'? uWSGI "
        "reads 'http_socket' as a placeholder: ini keys are written with '-')")


def test_sections_as_uwsgi_reads_them(here):
    exported, cfg = resolve("""
        before = 0
        [uwsgi]
        a = 1
        [ uwsgi ]
        b = 2
        [uwsgi]x
        c = 3
        [uwsgi]
        d = 4
    """)
    # uWSGI drops the header's last character: "[ uwsgi ]" is " uwsgi ", "[uwsgi]x" is "uwsgi]".
    assert set(exported) - {"ini"} == {"a", "d"}


def test_named_section_and_reuse_of_the_last_file(here):
    write(here / "app.ini", "[uwsgi]\nmaster = true\nini = :extra\n[extra]\nthreads = 3\nv = %x\n")
    cfg = load(["app.ini"], {})
    assert cfg.master and cfg.threads == 3
    assert cfg.ini == ["app.ini", "app.ini:extra"]
    assert dict(cfg.exported)["v"] == "extra"


# --------------------------------------------------------------------------
# Magic variables.
# --------------------------------------------------------------------------


def test_file_magic_variables(here):
    path = write(here / "srv" / "site" / "prod.v2.ini",
                 "[uwsgi]\nv = %d|%p|%o|%s|%n|%e|%c|%0|%1|%2|%9|%x\n")
    cfg = load(["--ini", "srv/site/prod.v2.ini"], {})
    d = str(here / "srv" / "site") + "/"
    parts = [p for p in d.split("/") if p]
    expected = [d, str(path), "srv/site/prod.v2.ini", "prod.v2.ini", "prod.v2", "ini", "site",
                parts[0], parts[1], parts[2] if len(parts) > 2 else "",
                parts[9] if len(parts) > 9 else "", ""]
    assert dict(cfg.exported)["v"].split("|") == expected


def test_inode_and_djb33x_hash(here):
    path = write(here / "a.ini", "[uwsgi]\nv = %i %j\n")
    ino, digest = dict(load(["--ini", "a.ini"], {}).exported)["v"].split()
    assert ino == str(os.lstat(path).st_ino)
    h = 5381
    for b in str(path).encode():
        h = (((h << 5) + h) ^ (b - 256 if b >= 128 else b)) & 0xFFFFFFFF
    assert digest == h.to_bytes(4, sys.byteorder).hex().upper() and len(digest) == 8


def test_process_magic_variables(here):
    before = int(time.time())
    got = value("[uwsgi]\nv = %v|%h|%k|%u|%U|%g|%G|%[|%t|%T|%V\n").split("|")
    assert got[:8] == [str(here), socket.gethostname(), str(os.sysconf("SC_NPROCESSORS_ONLN")),
                       str(os.getuid()), pwd.getpwuid(os.getuid()).pw_name, str(os.getgid()),
                       grp.getgrgid(os.getgid()).gr_name, "\x1b"]
    assert before <= int(got[8]) <= time.time() and int(got[9]) // 1_000_000 == int(got[8])
    assert got[10] == __version__  # DEVIATION: uwsgipy's version, not uWSGI's


def test_percent_escapes_unknown_letters_and_line_ends(here):
    exported, _ = resolve("[uwsgi]\nv = 100%% %z%Q% end\npct = 50%\nnext = swallowed\n"
                          "last = x%")
    assert exported["v"] == ["100% end"]  # unknown letters (and "% ") are nothing
    assert exported["pct"] == ["50next = swallowed"]  # '%' ate the line break
    assert exported["last"] == ["x"]  # and at the end of the file, the NUL
    assert "next" not in exported


def test_percent_percent_does_not_protect_a_placeholder(here):
    # %% is substituted with the file, %(name) later: "%%(a)" is "%(a)", expanded.
    assert value("[uwsgi]\na = 1\nv = %%(a)\n") == "1"


def test_line_numbers_survive_a_swallowed_line_break(here):
    _, cfg = resolve("[uwsgi]\na = 50%\nb = 1\nhtp-socket = x\n")
    assert cfg.warnings[0] == ("app.ini:2: the '%' at the end of the line swallows the line "
                               "break, so the next line is part of this one (as in uWSGI); "
                               "write %% for a percent sign")
    assert cfg.warnings[-1].startswith("app.ini:4: unknown option 'htp-socket'")


def test_upper_case_magic_is_the_first_ini_file(here):
    write(here / "first.ini", "[uwsgi]\nini = second.ini\n")
    write(here / "second.ini", "[uwsgi]\nv = %n/%N %d/%D\n")
    got = dict(load(["--ini", "first.ini"], {}).exported)["v"]
    assert got == f"second/first {here}//{here}/"
    # A file named without --ini sets none (uWSGI's uwsgi_opt_load).
    write(here / "pos.ini", "[uwsgi]\nv = [%N]\n")
    assert dict(load(["pos.ini"], {}).exported)["v"] == "[]"


# --------------------------------------------------------------------------
# Placeholders and expansion.
# --------------------------------------------------------------------------


def test_custom_placeholders_and_options_as_placeholders(here):
    _, cfg = resolve("""
        [uwsgi]
        project = shop
        base = /srv/%(project)
        chdir = %(base)/current
        logto = %(chdir)/log/%(project).log
    """)
    assert cfg.chdir == "/srv/shop/current"
    assert cfg.logto == "/srv/shop/current/log/shop.log"
    assert cfg.warnings == []  # used placeholders are not mistakes


def test_placeholder_is_the_first_value_anywhere(here):
    exported, _ = resolve("""
        [uwsgi]
        early = %(late)
        dup = one
        dup = two
        first = %(dup)
        late = L
    """, env={"UWSGI_FROM_ENV": "E"})
    assert exported["early"] == ["L"] and exported["first"] == ["one"]
    # The environment is read first, so it is the first value.
    exported, _ = resolve("[uwsgi]\nprocesses = 4\nv = %(processes)\n",
                          env={"UWSGI_PROCESSES": "2"})
    assert exported["v"] == ["2"]


def test_placeholder_names_are_exact(here):
    exported, cfg = resolve("[uwsgi]\nwsgi-file = app.py\nv = %(wsgi_file)|%(file)\n")
    assert exported["v"] == ["%(wsgi_file)|%(file)"]
    assert "unknown placeholder '%(wsgi_file)'" in cfg.warnings[0]


def test_unknown_placeholder_kept_quietly_in_log_format(here):
    _, cfg = resolve("[uwsgi]\nlog-format = %(addr) %(uri) %(status)\n")
    assert cfg.log_format == "%(addr) %(uri) %(status)" and cfg.warnings == []


def test_expansion_restarts_after_a_substitution(here):
    exported, _ = resolve("""
        [uwsgi]
        a = A
        nested = x%(a)
        ref = <%(nested)>
        emp =
        q0 = %(emp)%(a)
        q1 = x%(emp)%(a)
        paren = %(a(b))
    """)
    assert exported["ref"] == ["<xA>"]  # expanded results are expanded again
    # uWSGI's scanner restarts at the second character: a reference left at
    # the very start is not seen again.
    assert exported["q0"] == ["%(a)"] and exported["q1"] == ["xA"]
    assert exported["paren"] == ["%(a(b))"]  # nested parentheses belong to the name


def test_self_reference_is_an_error_not_a_hang(here):
    msg = error_of("[uwsgi]\na = x%(a)\n")
    assert msg == ("app.ini:2: option 'a': %(...) references expand without end (a value "
                   "that refers to itself?)")


def test_arithmetic(here):
    exported, _ = resolve("""
        [uwsgi]
        n = 10
        a = A
        k2 = %(%k * 2 + 1)
        left_to_right = %(3 + 4 * 2)
        name_plus = %(n + 1)
        unknown_is_zero = %(nothing + 1)
        text_is_zero = %(a + 1)
        inc = %(n ++)
        dec = %(n --)
        div0 = %(n / 0)
        trunc = %(-7 + 0 / 2)
        neg = %(0 - 7 / 2)
        sub = %(n - 20)
        concat = %(a a n)
        dangling = %(n * )
        spaces = %( n)
        only_ops = %(+ -)
    """)
    k = os.sysconf("SC_NPROCESSORS_ONLN")
    assert exported["k2"] == [str(k * 2 + 1)]
    assert exported["left_to_right"] == ["14"]
    assert exported["name_plus"] == ["11"]
    assert exported["unknown_is_zero"] == ["1"]
    assert exported["text_is_zero"] == ["1"]
    assert exported["inc"] == ["11"] and exported["dec"] == ["9"]
    assert exported["div0"] == ["0"]
    assert exported["trunc"] == ["0"]  # "-7" is not a number for uWSGI: a name, so ""
    assert exported["neg"] == ["-3"]  # C division truncates toward zero
    assert exported["sub"] == ["-10"]
    assert exported["concat"] == ["AA10"]
    assert exported["dangling"] == ["10"] and exported["spaces"] == ["10"]
    assert exported["only_ops"] == ["%(+ -)"]


def test_arithmetic_with_workers(here):
    _, cfg = resolve("[uwsgi]\ncores = 3\nprocesses = %(cores * 2 + 1)\nthreads = %(cores)\n")
    assert cfg.processes == 7 and cfg.threads == 3 and cfg.warnings == []
    _, cfg = resolve("[uwsgi]\nworkers = %k\n")
    assert cfg.processes == os.sysconf("SC_NPROCESSORS_ONLN")


def test_env_references(here):
    exported, cfg = resolve("""
        [uwsgi]
        base = $(APP_HOME)/current
        unset = $(NOPE)
        emp = $(EMPTY)$(APP_HOME)
    """, env={"APP_HOME": "/srv", "EMPTY": ""})
    assert exported["base"] == ["/srv/current"]
    assert exported["unset"] == ["$(NOPE)"]  # as uWSGI: kept, not ""
    assert exported["emp"] == ["$(APP_HOME)"]  # the restart quirk again
    assert ("app.ini:3: option 'unset': environment variable 'NOPE' is not set, so '$(NOPE)' "
            "stays as written (as in uWSGI)") in cfg.warnings


def test_env_references_come_before_placeholders(here):
    exported, _ = resolve("[uwsgi]\na = $(X)\nv = %(a)|%(b)\nb = $(Y)\n",
                          env={"X": "x%(b)", "Y": "$(X)"})
    # $(X) gives "x%(b)", expanded by the later %-pass; $(...) from a placeholder is not.
    assert exported["a"] == ["x$(X)"]
    assert exported["v"] == ["x$(X)|$(X)"]


def test_file_contents(here):
    (here / "secret").write_text("s3cret\n\n")
    (here / "one").write_text("one\r\n")
    exported, _ = resolve("[uwsgi]\nv = [@(secret)] [@(one)]\n")
    assert exported["v"] == ["[s3cret\n] [one\r]"]  # one trailing \n or \r removed, no more
    assert error_of("[uwsgi]\nmaster = true\nv = @(missing.txt)\n") == (
        "app.ini:3: option 'v': cannot read @(missing.txt): No such file or directory")
    assert "only plain files" in error_of("[uwsgi]\nv = @(exec://ls)\n")


def test_immediate_options_are_not_expanded(here):
    exported, _ = resolve("[uwsgi]\nset-placeholder = sp=$(HOME)\nv = %(sp)\n",
                          env={"HOME": "/root"})
    assert exported["sp"] == ["$(HOME)"] and exported["v"] == ["$(HOME)"]
    msg = error_of("[uwsgi]\nini = $(CONF)/x.ini\n", env={"CONF": "/etc"})
    assert msg == ("app.ini:2: ini file '$(CONF)/x.ini' not found (uWSGI expands only magic "
                   "variables such as %d in ini = ..., not $(...), %(...) or @(...))")


def test_set_placeholder_and_set(here):
    exported, cfg = resolve("""
        [uwsgi]
        set-ph = a=5
        set-placeholder = spaced = x
        set = processes=%(a)
        set = custom=c
    """, "--set-ph", "cli=2", "-S", "threads=3")
    assert exported["a"] == ["5"] and exported["spaced "] == [" x"]  # spaces kept
    assert cfg.processes == 5 and cfg.sources["processes"] == "app.ini:4"
    assert exported["custom"] == ["c"] and exported["cli"] == ["2"]
    # The set lines themselves: the command line's list replaces the file's.
    assert cfg.threads == 3 and cfg.set == ["threads=3"]
    msg = error_of("[uwsgi]\nset-placeholder = processes=4\n")
    assert msg == ("app.ini:2: 'set-placeholder': 'processes' is an option, so it cannot be "
                   "a placeholder (pick another name)")
    assert error_of("[uwsgi]\nset-ph = novalue\n") == (
        "app.ini:2: 'set-ph' needs NAME=VALUE, got 'novalue'")


def test_command_line_values_are_expanded_too(here):
    _, cfg = resolve("[uwsgi]\nbase = /srv\n", "--chdir", "%(base)/app", "--logto",
                     "$(LOGS)/a.log", env={"LOGS": "/var/log"})
    assert cfg.chdir == "/srv/app" and cfg.logto == "/var/log/a.log"


# --------------------------------------------------------------------------
# Logic blocks.
# --------------------------------------------------------------------------


def test_if_env(here):
    exported, _ = resolve("""
        [uwsgi]
        if-env = APP_ENV
        a = %(_)
        endif =
        if-env = APP_ENV=prod
        b = yes
        endif
        if-env = APP_ENV=dev
        c = no
        endif
        if-not-env = APP_ENV
        d = no
        endif
        if-not-env = APP_ENV=dev
        e = %(_)
        endif
        ifenv = NOPE
        f = no
        end
    """, env={"APP_ENV": "prod"})
    assert exported["a"] == ["prod"] and exported["b"] == ["yes"] and exported["e"] == ["prod"]
    assert not {"c", "d", "f"} & set(exported)
    assert exported["if-env"] == ["APP_ENV", "APP_ENV=prod", "APP_ENV=dev"]  # shown as uWSGI


def test_if_opt_sees_the_first_value_as_written(here):
    exported, _ = resolve("""
        [uwsgi]
        mode = fast
        if-opt = mode=fast
        a = %(_)
        endif
        if-opt = mode
        b = %(_)
        endif
        if-not-opt = other
        c = yes
        endif
        if-opt = later
        d = no
        endif
        later = 1
    """)
    assert exported["a"] == ["fast"] and exported["b"] == ["fast"] and exported["c"] == ["yes"]
    assert "d" not in exported  # tested while reading: "later" comes after


def test_if_exists_file_dir(here):
    (here / "conf.d").mkdir()
    (here / "local.ini").write_text("[uwsgi]\n")
    exported, _ = resolve("""
        [uwsgi]
        if-exists = local.ini
        a = %(_)
        endif
        if-not-exists = nope
        b = %(_)
        endif
        if-file = conf.d
        c = no
        endif
        if-not-file = conf.d
        d = %(_)
        endif
        if-dir = conf.d
        e = %(_)
        endif
        if-not-dir = local.ini
        f = %(_)
        endif
        ifexists = nope
        g = no
        endif
    """)
    assert exported["a"] == ["local.ini"] and exported["b"] == ["nope"]
    assert exported["d"] == ["conf.d"] and exported["e"] == ["conf.d"]
    assert exported["f"] == ["local.ini"]
    assert "c" not in exported and "g" not in exported


def test_if_hostname_plugin_reload(here):
    host = socket.gethostname()
    text = f"""
        [uwsgi]
        if-hostname = {host}
        a = %(_)
        endif
        if-not-hostname = {host}
        b = no
        endif
        if-hostname-match = ^{host[:1]}
        c = yes
        endif
        if-plugin = python
        d = yes
        endif
        if-plugin = python3
        e = no
        endif
        if-reload
        f = reload
        endif
        if-not-reload
        g = fresh
        endif
    """
    exported, _ = resolve(text)
    assert exported["a"] == [host] and exported["c"] == ["yes"] and exported["d"] == ["yes"]
    assert exported["g"] == ["fresh"] and not {"b", "e", "f"} & set(exported)
    exported, _ = resolve(text, env={"UWSGIPY_REEXEC": "1"})  # the master re-executing itself
    assert exported["f"] == ["reload"] and "g" not in exported


def test_for_loops(here):
    (here / "apps").mkdir()
    (here / "apps" / "b.py").write_text("")
    (here / "apps" / "a.py").write_text("")
    (here / "apps" / "sub").mkdir()
    (here / "hosts.txt").write_bytes(b"one\r\ntwo words\n\nthree")
    exported, _ = resolve("""
        [uwsgi]
        for = a  b c
        f = [%(_)]
        g = %(_)%(_)
        endfor
        for-glob = apps/*
        glob = %(_)
        endfor
        for-glob = nomatch/*.py
        none = %(_)
        endfor
        for-readline = hosts.txt
        line = [%(_)]
        endfor
        for-times = 3
        t = %(_)
        endfor
        for-times = zero
        z = %(_)
        end-for
    """)
    assert exported["f"] == ["[a]", "[b]", "[c]"] and exported["g"] == ["aa", "bb", "cc"]
    assert exported["glob"] == ["apps/a.py", "apps/b.py", "apps/sub/"]  # sorted, dirs marked
    assert exported["none"] == ["nomatch/*.py"]  # GLOB_NOCHECK
    assert exported["line"] == ["[one]", "[two words]", "[]", "[three]"]
    assert exported["t"] == ["1", "2", "3"] and "z" not in exported


def test_for_readline_splits_long_lines_and_warns_on_missing_file(here):
    (here / "long.txt").write_text("x" * 1030 + "\n")
    exported, cfg = resolve("[uwsgi]\nfor-readline = long.txt\nl = %(_)\nendfor\n"
                            "for-readline = gone.txt\nm = %(_)\nendfor\n")
    assert [len(v) for v in exported["l"]] == [1023, 7]  # fgets(line, 1024, ...)
    assert "m" not in exported
    assert "app.ini:5: for-readline: cannot read 'gone.txt': No such file or directory" in \
        cfg.warnings[0]


def test_loop_with_real_options(here):
    _, cfg = resolve("[uwsgi]\nfor = 8001 8002\nhttp-socket = 127.0.0.1:%(_)\nendfor\n")
    assert cfg.http_socket == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert cfg.sources["http-socket"] == "app.ini:3"


def test_blocks_do_not_nest(here):
    msg = error_of("[uwsgi]\nif-env = HOME\nif-exists = /\na = 1\nendif\nendif\n",
                   env={"HOME": "/root"})
    assert msg == ("app.ini:3: 'if-exists' inside the 'if-env' block opened at app.ini:2: "
                   "uWSGI does not nest if/for blocks (close the first with endif/endfor)")
    # Inside a block that does not apply, the inner opener is skipped and its
    # endif closes the outer block: what follows applies, as in uWSGI.
    exported, cfg = resolve("[uwsgi]\nif-env = NOPE\na = 1\nif-env = HOME\nb = 2\nendif\n"
                            "c = 3\nendif\nd = 4\n", env={"HOME": "/root"})
    assert "a" not in exported and "b" not in exported
    assert exported["c"] == ["3"] and exported["d"] == ["4"]
    assert cfg.warnings[0] == (
        "app.ini:4: 'if-env' inside the 'if-env' block opened at app.ini:2 is skipped with it, "
        "and the next endif/endfor closes both blocks (uWSGI does not nest if/for blocks)")


def test_unclosed_block_warns_and_spans_files(here):
    write(here / "b.ini", "[uwsgi]\nfrom_b = 1\n")
    write(here / "a.ini", "[uwsgi]\nif-env = NOPE\nfrom_a = 1\n")
    cfg = load(["--ini", "a.ini", "--ini", "b.ini"], {})
    keys = [k for k, _ in cfg.exported]
    assert "from_a" not in keys and "from_b" not in keys  # uWSGI's block goes on
    assert cfg.warnings[0] == ("a.ini:2: the 'if-env' block is never closed (add "
                               "endif/endfor): it applied to every line after it")


def test_logic_with_includes(here):
    write(here / "prod.ini", "[uwsgi]\nprocesses = 8\n")
    _, cfg = resolve("[uwsgi]\nif-env = APP_ENV\nini = %(_).ini\nendif\n",
                     env={"APP_ENV": "prod"})
    assert cfg.processes == 8 and cfg.ini == ["app.ini", "prod.ini"]


# --------------------------------------------------------------------------
# Includes.
# --------------------------------------------------------------------------


def test_include_resolves_against_cwd_first(here):
    write(here / "common.ini", "[uwsgi]\nthreads = 2\n")
    write(here / "conf" / "common.ini", "[uwsgi]\nthreads = 9\n")
    write(here / "conf" / "app.ini", "[uwsgi]\nini = common.ini\n")
    assert load(["conf/app.ini"], {}).threads == 2  # uWSGI: the current directory


def test_include_keyword_reads_ini_without_upper_magic(here):
    write(here / "part.ini", "[uwsgi]\nv = %n [%N]\n")
    write(here / "main.ini", "[uwsgi]\ninclude = part.ini\n")
    cfg = load(["main.ini"], {})
    assert dict(cfg.exported)["v"] == "part []"
    assert "only ini files" in error_of("[uwsgi]\ninclude = x.yaml\n")


# --------------------------------------------------------------------------
# Environment and command line.
# --------------------------------------------------------------------------


def test_env_order_and_uwsgi_ini_with_a_command_line_ini(here):
    write(here / "env.ini", "[uwsgi]\nprocesses = 2\nsocket = :1\n")
    write(here / "cli.ini", "[uwsgi]\nsocket = :2\n")
    env = {"UWSGI_SOCKET": ":0", "UWSGI_INI": "env.ini", "UWSGI_THREADS": "4"}
    cfg = load(["cli.ini"], env)
    # uWSGI reads both files: UWSGI_INI with the environment, first.
    assert cfg.socket == [":0", ":1", ":2"] and cfg.processes == 2 and cfg.threads == 4
    assert cfg.ini == ["env.ini", "cli.ini"]
    assert cfg.sources["ini"] == "env UWSGI_INI, command line"
    assert [k for k, _ in cfg.exported] == ["socket", "ini", "processes", "socket", "threads",
                                            "socket"]


def test_unknown_env_variable_warns_unless_used(here):
    cfg = load([], {"UWSGI_HTP_SOCKET": ":80", "UWSGI_PROJECT": "shop", "UWSGI_RELOADS": "3"})
    assert cfg.warnings == [
        "env UWSGI_HTP_SOCKET: unknown option 'htp-socket' ignored (did you mean 'http-socket'?)",
        "env UWSGI_PROJECT: unknown option 'project' ignored (no option is called so, and "
        "nothing uses %(project))"]
    _, cfg = resolve("[uwsgi]\nchdir = /srv/%(project)\n", env={"UWSGI_PROJECT": "shop"})
    assert cfg.chdir == "/srv/shop" and cfg.warnings == []


def test_empty_env_variable_counts_as_unset(here):
    cfg = load([], {"UWSGI_VACUUM": "", "UWSGI_PROCESSES": ""})
    assert cfg.vacuum is False and cfg.processes == 1  # DEVIATION: uWSGI reads "" as true/0


# --------------------------------------------------------------------------
# strict, warnings, show-config, print.
# --------------------------------------------------------------------------


def test_strict(here):
    text = "[uwsgi]\nproject = shop\nchdir = /srv/%(project)\n"
    assert resolve(text)[1].warnings == []
    for how in (("--strict",), ()):
        msg = error_of(text + ("strict = true\n" if not how else ""), *how)
        assert msg == ("app.ini:2: unknown option 'project': strict allows only options "
                       "(declare placeholders with set-placeholder)")
    _, cfg = resolve("[uwsgi]\nstrict = true\nset-ph = project=shop\nchdir = /srv/%(project)\n")
    assert cfg.strict and cfg.chdir == "/srv/shop"
    assert resolve("[uwsgi]\nstrict = false\nproject = x\n")[1].warnings  # just a warning


def test_show_config_text_and_report(here, caplog, capsys):
    _, cfg = resolve("[uwsgi]\nmaster\nhtp-socket = x\nprocesses = %(2 + 2)\n", "--show-config")
    assert ini.show_config_text(cfg.exported) == (
        "\n;uWSGI instance configuration\n[uwsgi]\nini = app.ini\nmaster = \nhtp-socket = x\n"
        "processes = 4\nshow-config = true\n;end of configuration\n\n")
    with caplog.at_level(logging.WARNING, logger="uwsgipy"):
        config.report_config(cfg, logging.getLogger("uwsgipy"))
    assert [r.getMessage() for r in caplog.records] == [
        "app.ini:3: unknown option 'htp-socket' ignored (did you mean 'http-socket'?)"]
    assert ";uWSGI instance configuration\n[uwsgi]\nini = app.ini\n" in capsys.readouterr().err


def test_print_after_expansion_iprint_at_once(here):
    printed: list = []
    resolve("[uwsgi]\nprint = one %(later)\niprint = now %(later)\nlater = L\nprint = two\n",
            "--print", "cli $(X)", env={"X": "x"}, out=printed)
    assert printed == ["now %(later)", "one L", "two", "cli x"]


def test_print_goes_to_stdout_by_default(here, capsys):
    write(here / "p.ini", "[uwsgi]\nprint = hello %n\n")
    load(["p.ini"], {})
    assert capsys.readouterr().out == "hello p\n"


def test_errors_are_one_line_without_traceback(here):
    write(here / "bad.ini", "[uwsgi]\nhttp-socket = 127.0.0.1:0\nif-env = HOME\nfor = a\n")
    proc = subprocess.run([sys.executable, "-m", "uwsgipy", "bad.ini"], cwd=here,
                          env=child_env({"HOME": "/root"}),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == ("uwsgipy: bad.ini:4: 'for' inside the 'if-env' block opened at "
                           "bad.ini:3: uWSGI does not nest if/for blocks (close the first with "
                           "endif/endfor)\n")


def test_warnings_are_logged_at_start_up(here):
    write(here / "w.ini", "[uwsgi]\nhtp-socket = 127.0.0.1:0\n")
    proc = subprocess.run([sys.executable, "-m", "uwsgipy", "w.ini"], cwd=here,
                          env=child_env(),
                          capture_output=True, text=True, timeout=30)
    lines = proc.stderr.splitlines()
    assert lines[0] == ("uwsgipy: WARNING: w.ini:2: unknown option 'htp-socket' ignored "
                        "(did you mean 'http-socket'?)")
    assert proc.returncode == 2 and "no listener configured" in lines[1]


def test_loops_are_bounded(here):
    assert error_of("[uwsgi]\nfor-times = 99999999\nt = %(_)\nendfor\n") == (
        "app.ini:2: 'for-times = 99999999' repeats its block more than 100000 times, the most "
        "uwsgipy allows")
    exported, _ = resolve("[uwsgi]\nfor-times = 4294967298\nt = %(_)\nendfor\n")
    assert exported["t"] == ["1", "2"]  # C atoi() keeps the low 32 bits


def test_placeholder_of_a_command_line_flag_has_no_value(here):
    exported, cfg = resolve("[uwsgi]\nv = %(master)\n", "--master")
    assert exported["v"] == ["%(master)"]  # uWSGI's NULL
    assert cfg.warnings == ["app.ini:2: option 'v': '%(master)' stays as written: 'master' was "
                            "given as a command-line flag, which has no value (as in uWSGI)",
                            "app.ini:2: unknown option 'v' ignored (no option is called so, and "
                            "nothing uses %(v))"]


def test_a_real_server_from_the_config_language(tmp_path):
    """The language end to end: a real uwsgipy started from an ini file that uses
    placeholders, a conditional, a loop and arithmetic, with show-config and print, serves a
    request whose answer shows the resolved values."""
    from helpers import ServerProcess, http_request

    (tmp_path / "app.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [' '.join(os.environ.get(k, '-') for k in\n"
        "                     ('DEPLOY', 'LETTER_A', 'LETTER_B')).encode()]\n")
    write(tmp_path / "site.ini", """
        [uwsgi]
        project = shop
        if-env = APP_ENV=prod
        env = DEPLOY=%(project)-%(_)
        endif
        for = A B
        env = LETTER_%(_)=%(_)%(%k * 0 + 1)
        endfor
        http-socket = 127.0.0.1:0
        wsgi-file = %dapp.py
        show-config = true
        print = starting %(project) ; not a comment
    """)
    srv = ServerProcess(["site.ini"], cwd=tmp_path, env={"APP_ENV": "prod"}).start()
    try:
        reply = http_request(srv.http_addr)
        assert reply.status == 200 and reply.body == b"shop-prod A1 B1"
        out = srv.output()
        assert "starting shop ; not a comment" in out
        assert "\n;uWSGI instance configuration\n[uwsgi]\nproject = shop\nif-env = APP_ENV=prod\n" \
               "env = DEPLOY=shop-prod\nendif = \nfor = A B\nenv = LETTER_A=A1\n" in out
        assert "WARNING" in out and "'; not a comment' is part of the value" in out
    finally:
        srv.stop()
