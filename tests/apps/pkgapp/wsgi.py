"""A package module with several callables, for --module pkg.mod:name and --callable."""


def _make(name):
    def app(environ, start_response):
        body = ("callable=%s" % name).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return app


application = _make("application")
app = _make("app")
other = _make("other")
