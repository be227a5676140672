from django.contrib import admin
from django.urls import include, path, re_path

from realtime.api import api, not_found_view
from realtime.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/", not_found_view),  # ninja's own root answered Django's HTML 404 page.
    path("api/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", not_found_view),  # JSON, as every API error.
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("frontend.urls")),
]
