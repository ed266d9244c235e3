"""An app whose import fails: the master must stop with exit code 4
(EXIT_APP_LOAD) and show this traceback, not respawn workers forever."""


def _configure():
    raise RuntimeError("ops_broken: database URL not configured")


_configure()


def application(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
