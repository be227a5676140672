"""The voice pipeline's stages: recognise → turns → reply → split → speak → deliver."""
