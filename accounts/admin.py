from django.contrib import admin

from .models import ApiToken
from .services import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at", "user", "name")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # Tokens are shown once: create them with `manage.py create_token`.

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            token_revoke(token=token)
