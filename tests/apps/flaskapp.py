"""A small Flask app: form POST, multipart upload, redirect, cookies, streamed download, JSON,
send_file (wsgi.file_wrapper).  Serve with: --pythonpath tests/apps --module flaskapp:app"""
import hashlib

from flask import Flask, Response, jsonify, make_response, redirect, request, send_file

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024


def pattern_block(i):
    return hashlib.sha256(str(i).encode()).digest() * 2048


@app.get("/")
def index():
    return "flask ok"


@app.post("/form")
def form():
    return jsonify({k: request.form.getlist(k) for k in request.form})


@app.post("/upload")
def upload():
    f = request.files["file"]
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = f.stream.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return jsonify(filename=f.filename, size=n, sha256=h.hexdigest(), note=request.form.get("note"))


@app.get("/redirect")
def go():
    return redirect("/target", code=302)


@app.get("/target")
def target():
    return "target reached"


@app.get("/setcookie")
def setcookie():
    resp = make_response("cookie set")
    resp.set_cookie("flavour", "chocolate")
    resp.set_cookie("second", "two")
    return resp


@app.get("/getcookie")
def getcookie():
    return jsonify(dict(request.cookies))


@app.get("/download")
def download():
    blocks = int(request.args.get("blocks", "160"))  # 160 x 64 KiB = 10 MiB

    def gen():
        for i in range(blocks):
            yield pattern_block(i)

    return Response(gen(), mimetype="application/octet-stream")


@app.post("/json")
def json_echo():
    data = request.get_json()
    return jsonify(received=data, count=len(data.get("items", [])))


@app.get("/sendfile")
def sendfile():
    return send_file(request.args["path"], mimetype="application/octet-stream")
