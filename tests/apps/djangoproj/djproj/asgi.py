"""Serve with: --chdir tests/apps/djangoproj --pythonpath tests/apps/djangoproj --module djproj.asgi
(Django's ASGIHandler: its __call__ is `async def`, so uwsgipy's asgi = auto picks ASGI.)"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproj.settings")
application = get_asgi_application()
