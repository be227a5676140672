"""Each voice stage alone: frames in, frames out; no engine, database or socket."""
