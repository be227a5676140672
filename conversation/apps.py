from django.apps import AppConfig


class ConversationConfig(AppConfig):
    name = "conversation"
    verbose_name = "Conversation engine"

    def ready(self) -> None:
        from realtime import readiness

        from .engines import get_engine
        from .memory import consolidation_status

        readiness.register("llm", lambda: get_engine().describe())
        readiness.register("memory", consolidation_status)
