// AudioWorklet: microphone samples at the context's rate → 16 kHz PCM16 chunks for the server.
//
// Downsampling low-passes first (a windowed-sinc FIR with its cutoff below the new Nyquist
// frequency, so nothing above 8 kHz folds back as aliasing), then reads the filtered signal at
// the output instants with linear interpolation. Each chunk (`chunkMs` long) is posted to the
// page as an Int16Array with its RMS level.

const TAPS = 48;

function lowPassTaps(inputRate, outputRate) {
  const cutoff = (0.45 * outputRate) / inputRate; // cycles per input sample; 0.45 < 0.5 (Nyquist)
  const taps = new Float32Array(TAPS);
  const middle = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman =
      0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * blackman;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum; // unity gain at DC
  return taps;
}

class Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.outputRate = opts.outputRate || 16000;
    this.step = sampleRate / this.outputRate; // input samples per output sample
    this.filter = this.step > 1 ? lowPassTaps(sampleRate, this.outputRate) : null;
    this.history = new Float32Array(TAPS); // the last TAPS input samples, a ring
    this.historyPos = 0;
    this.previous = 0; // the filtered sample before the current one
    this.position = 1; // where the next output sample falls, in input samples after `previous`
    this.chunk = new Int16Array(Math.round((this.outputRate * (opts.chunkMs || 80)) / 1000));
    this.filled = 0;
    this.squares = 0;
  }

  filtered(sample) {
    if (!this.filter) return sample;
    this.history[this.historyPos] = sample;
    this.historyPos = (this.historyPos + 1) % TAPS;
    let acc = 0;
    let index = this.historyPos;
    for (let i = 0; i < TAPS; i++) {
      acc += this.filter[i] * this.history[index];
      index = index + 1 === TAPS ? 0 : index + 1;
    }
    return acc;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.chunk[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    this.squares += clipped * clipped;
    if (this.filled === this.chunk.length) {
      const level = Math.sqrt(this.squares / this.filled);
      const pcm = this.chunk.slice();
      this.port.postMessage({ pcm, level }, [pcm.buffer]);
      this.filled = 0;
      this.squares = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const input = channels[0];
    for (let i = 0; i < input.length; i++) {
      const current = this.filtered(input[i]);
      // Output instants between the previous and the current filtered sample.
      while (this.position <= 1) {
        this.emit(this.previous + (current - this.previous) * this.position);
        this.position += this.step;
      }
      this.position -= 1;
      this.previous = current;
    }
    return true;
  }
}

registerProcessor("voz-downsampler", Downsampler);
