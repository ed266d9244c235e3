"""Single-process mode (no --master) applies what uWSGI applies without a master, and
switches the master on for the options that need it, as uWSGI's UWSGI_OPT_MASTER does."""
from __future__ import annotations

import os
import stat

from helpers import REPO, http_request, short_tmpdir

HELLO = str(REPO / "examples" / "hello.py")


def test_umask_applies_without_master(server_factory):
    d = short_tmpdir()
    path = os.path.join(d, "app.sock")
    srv = server_factory("--socket", path, "--http-socket", "127.0.0.1:0", "--wsgi-file", HELLO,
                         "--umask", "077")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o077 == 0, oct(mode)
    assert http_request(srv.http_addr, "GET", "/").status == 200


def test_options_that_need_the_master_switch_it_on(server_factory, tmp_path):
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("")
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", HELLO,
                         "--touch-reload", str(trigger))
    srv.wait_for("master mode on: touch-reload implies it", 5)
    assert http_request(srv.http_addr, "GET", "/").status == 200
    assert "ignored" not in srv.output()


def test_pre_app_hook_runs_without_master(server_factory, tmp_path):
    marker = tmp_path / "ran"
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", HELLO,
                         "--exec-pre-app", f"touch {marker}")
    assert marker.exists()
    assert http_request(srv.http_addr, "GET", "/").status == 200
