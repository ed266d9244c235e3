"""Serve with: --chdir tests/apps/djsite --pythonpath tests/apps/djsite --module djsite.wsgi"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
application = get_wsgi_application()
