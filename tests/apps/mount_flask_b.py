"""Flask app 'b' for the mount tests (tests/test_mount.py): mounted under a prefix, it must see
SCRIPT_NAME = the prefix and PATH_INFO = the rest, so url_for() builds prefixed URLs.
Loadable as a file (`mount = /b=tests/apps/mount_flask_b.py`: the callable is `application`)
or as a module (`mount_flask_b:app` with tests/apps on the path)."""
from flask import Flask, jsonify, redirect, request, url_for

app = Flask(__name__)


@app.after_request
def tag(resp):
    resp.headers["X-Flask-App"] = "b"
    return resp


@app.get("/")
def index():
    return jsonify(app="b", view="index", script_name=request.environ.get("SCRIPT_NAME", ""),
                   path_info=request.environ.get("PATH_INFO", ""))


@app.get("/where")
def where():
    return jsonify(app="b", script_name=request.environ.get("SCRIPT_NAME", ""),
                   path_info=request.environ.get("PATH_INFO", ""), path=request.path,
                   url_for=url_for("where"), url_for_external=url_for("where", _external=True),
                   url_for_index=url_for("index"), query=request.query_string.decode(),
                   request_uri=request.environ.get("REQUEST_URI", ""))


@app.get("/go")
def go():
    return redirect(url_for("where"))


application = app
