// The microphone: getUserMedia → AudioWorklet (downsampling to 16 kHz PCM16) → callbacks.

export const INPUT_RATE = 16000;

export class Microphone {
  /**
   * @param {{onChunk: (pcm: Int16Array) => void, onLevel: (level: number) => void,
   *          raw?: boolean, chunkMs?: number}} options
   *   `raw` turns the browser's echo cancellation, noise suppression and gain control off (tests).
   */
  constructor({ onChunk, onLevel, raw = false, chunkMs = 80 }) {
    this.onChunk = onChunk;
    this.onLevel = onLevel;
    this.raw = raw;
    this.chunkMs = chunkMs;
    this.context = null;
    this.stream = null;
    this.node = null;
    this.opening = null; // the start in progress: a second start() joins it
    this.stopWanted = false; // stop() came while opening: close once open
  }

  /** Open or opening (so a second caller never opens a second microphone). */
  get active() {
    return this.stream !== null || this.opening !== null;
  }

  /** Open the microphone; calls while it opens share the one start. */
  start() {
    if (this.stream) return Promise.resolve();
    if (!this.opening) {
      this.stopWanted = false;
      this.opening = this.open().finally(() => {
        this.opening = null;
        if (this.stopWanted) this.stop();
      });
    }
    return this.opening;
  }

  async open() {
    const processing = !this.raw;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: processing,
        noiseSuppression: processing,
        autoGainControl: processing,
      },
    });
    try {
      const context = new AudioContext();
      await context.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
      const source = context.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(context, "voz-downsampler", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { outputRate: INPUT_RATE, chunkMs: this.chunkMs },
      });
      node.port.onmessage = (event) => {
        this.onLevel(event.data.level);
        this.onChunk(event.data.pcm);
      };
      source.connect(node);
      if (context.state === "suspended") await context.resume();
      Object.assign(this, { context, stream, node });
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      throw error;
    }
  }

  stop() {
    if (this.opening) this.stopWanted = true;
    if (!this.stream) return;
    this.stream.getTracks().forEach((track) => track.stop());
    this.node.port.onmessage = null;
    this.node.disconnect();
    this.context.close();
    this.stream = this.context = this.node = null;
    this.onLevel(0);
  }
}
