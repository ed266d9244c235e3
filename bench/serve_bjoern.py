"""Run a WSGI file under bjoern: serve_bjoern.py APP_FILE HOST PORT.

bjoern has no CLI; this is the smallest launcher: load `application` from the
file (as uWSGI's --wsgi-file does) and call bjoern.run(app, host, port).
"""

import sys

import bjoern

from wsgi_file import load_application


def main() -> None:
    app_file, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bjoern.run(load_application(app_file), host, port)


if __name__ == "__main__":
    main()
