"""Run a WSGI file under fastwsgi: serve_fastwsgi.py APP_FILE HOST PORT.

fastwsgi's CLI wants a module:app spec; this launcher loads `application`
from the file (as uWSGI's --wsgi-file does) and calls fastwsgi.run().
"""

import sys

import fastwsgi

from wsgi_file import load_application


def main() -> None:
    app_file, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fastwsgi.run(load_application(app_file), host=host, port=port)


if __name__ == "__main__":
    main()
