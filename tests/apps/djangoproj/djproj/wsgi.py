"""Serve with: --chdir tests/apps/djangoproj --pythonpath tests/apps/djangoproj --module djproj.wsgi"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproj.settings")
application = get_wsgi_application()
