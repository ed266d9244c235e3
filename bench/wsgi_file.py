"""Load `application` from a WSGI file, as uWSGI's --wsgi-file does (for the
peers' launchers: bjoern and fastwsgi have no such option)."""

import importlib.util


def load_application(path: str):
    spec = importlib.util.spec_from_file_location("bench_wsgi_app", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.application
