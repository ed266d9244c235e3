from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("upload/", views.upload, name="upload"),
    path("where/", views.where, name="where"),
    path("where/<str:word>/", views.where, name="where-word"),
]
