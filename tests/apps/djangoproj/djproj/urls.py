from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("csrf/", views.csrf),
    path("form/", views.form),
    path("form-exempt/", views.form_exempt),
    path("upload/", views.upload),
    path("redirect/", views.go),
    path("target/", views.target),
    path("setcookie/", views.setcookie),
    path("getcookie/", views.getcookie),
    path("download/", views.download),
    path("fileresponse/", views.fileresponse),
    path("json/", views.json_echo),
]
