// Reply audio: one complete sentence at a time, decoded and scheduled back to back on the
// Web Audio clock so there is no gap between sentences; `stop()` silences everything at once;
// `pause()` / `resume()` hold and continue it where it was (the audio clock itself stops).

export class Player {
  /** @param {(event: {type: string, index: number, response_id: string}) => void} onEvent */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.context = null;
    this.playing = new Set(); // scheduled or sounding AudioBufferSourceNodes
    this.nextStart = 0; // when the next sentence may start, in context time
    this.chain = Promise.resolve(); // decodes finish in arrival (= index) order
    this.generation = 0; // bumped by stop(): decodes of an older generation are dropped
    this.cancelled = new Set(); // response ids whose late audio must not play
    this.paused = false;
  }

  get busy() {
    return this.playing.size > 0;
  }

  ensureContext() {
    if (!this.context) this.context = new AudioContext();
    if (this.context.state === "suspended" && !this.paused) this.context.resume();
    return this.context;
  }

  /** Queue one sentence: `audio` is a complete file (WAV or MP3) as an ArrayBuffer. */
  enqueue(audio, { index, response_id }) {
    if (this.cancelled.has(response_id)) return;
    const context = this.ensureContext();
    const generation = this.generation;
    const decoded = context.decodeAudioData(audio);
    this.chain = this.chain
      .then(() => decoded)
      .then((buffer) => {
        if (generation !== this.generation || this.cancelled.has(response_id)) return;
        this.schedule(buffer, { index, response_id });
      })
      .catch((error) => this.onEvent({ type: "playback.error", index, response_id, error: String(error) }));
  }

  schedule(buffer, meta) {
    const context = this.context;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const startAt = Math.max(context.currentTime + 0.02, this.nextStart);
    this.nextStart = startAt + buffer.duration;
    const generation = this.generation;
    source.meta = meta;
    source.startTimer = setTimeout(
      () => {
        if (generation === this.generation) this.onEvent({ type: "playback.start", ...meta });
      },
      Math.max(0, (startAt - context.currentTime) * 1000),
    );
    source.onended = () => {
      if (!this.playing.delete(source)) return; // stopped: stop() already reported it
      this.onEvent({ type: "playback.end", ...meta });
    };
    this.playing.add(source);
    source.start(startAt);
    this.onEvent({ type: "playback.queued", ...meta });
  }

  /** Hold playback where it is (the user may be interrupting; docs/protocol.md#barge-in). */
  pause() {
    if (this.context && this.context.state === "running") this.context.suspend();
    this.paused = true;
  }

  /** Continue after `pause()` (a false interruption). */
  resume() {
    this.paused = false;
    if (this.context && this.context.state === "suspended") this.context.resume();
  }

  /** Stop at once: silence what sounds, drop what is queued, ignore late audio of `responseId`. */
  stop(responseId) {
    if (responseId) this.cancelled.add(responseId);
    this.generation += 1;
    const wasPlaying = [...this.playing];
    this.playing.clear();
    for (const source of wasPlaying) {
      clearTimeout(source.startTimer);
      source.onended = null;
      try {
        source.stop();
      } catch {
        /* never started */
      }
    }
    this.nextStart = 0;
    this.resume();
    if (wasPlaying.length > 0) {
      const { index, response_id } = wasPlaying[0].meta;
      this.onEvent({ type: "playback.stopped", index, response_id });
    }
    return wasPlaying.length > 0;
  }
}
