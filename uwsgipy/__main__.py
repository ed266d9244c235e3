"""``python -m uwsgipy``: the same as the ``uwsgipy`` command."""
from uwsgipy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
