from django.urls import path
from django.views.i18n import set_language

from . import views

app_name = "frontend"
urlpatterns = [
    path("", views.index, name="index"),
    # The page's language switch (a POST with `language` and `next`; remembered in a cookie).
    path("language/", set_language, name="set_language"),
]
