"""An app module whose own import of a dependency fails: the server must show this ImportError
as it is, not report the app module itself as missing."""
import definitely_missing_dependency_qq  # noqa: F401


def application(environ, start_response):  # pragma: no cover - never reached
    start_response("200 OK", [])
    return [b""]
