"""Run a WSGI file under bjoern: serve_bjoern.py APP_FILE HOST PORT.

bjoern has no CLI; this is the smallest launcher: load `application` from the
file (as uWSGI's --wsgi-file does) and call bjoern.run(app, host, port).
"""

import importlib.util
import sys

import bjoern


def load_application(path: str):
    spec = importlib.util.spec_from_file_location("bench_wsgi_app", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.application


def main() -> None:
    app_file, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bjoern.run(load_application(app_file), host, port)


if __name__ == "__main__":
    main()
