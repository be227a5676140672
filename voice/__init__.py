"""The real-time voice loop: protocol messages, a pipeline of async stages, sessions."""
