from django.apps import AppConfig


class AudioPipelineConfig(AppConfig):
    name = "audio_pipeline"
    verbose_name = "Speech: STT, TTS and audio formats"

    def ready(self) -> None:
        from characters.voices import register_voice_check
        from realtime import readiness

        from .stt import cache as speech_models
        from .stt.selection import readiness as stt_readiness
        from .tts.chain import readiness as tts_readiness
        from .tts.chain import voice_problem
        from .turn import readiness as turn_readiness

        readiness.register("stt", stt_readiness)
        readiness.register("tts", tts_readiness)
        readiness.register("turn", turn_readiness)
        readiness.register("speech_models", speech_models.stats)
        register_voice_check(voice_problem)  # Characters are saved with voices that exist.
