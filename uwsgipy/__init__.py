"""uwsgipy: a production WSGI server with a C core.

It speaks the uwsgi protocol behind nginx and HTTP/1.1 standalone, and is
configured like uWSGI (same option names, ini files and UWSGI_* variables).
This package import is kept light on purpose: nothing heavy is imported here.
"""

__version__ = "0.1.0"
