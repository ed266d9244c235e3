"""An app module that fails at import time."""
raise RuntimeError("intentional import failure xyzzy")


def application(environ, start_response):  # pragma: no cover - never reached
    start_response("200 OK", [])
    return [b""]
