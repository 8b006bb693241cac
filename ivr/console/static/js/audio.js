// Browser audio for the softphone and the grammar tester: the microphone through an
// AudioWorklet, resampling to the telephone rates, 16-bit PCM, WAV files, and gapless
// playback of the bot's PCM frames.

const WORKLET = new URL("./capture-worklet.js", import.meta.url);

// Streaming windowed-sinc resampler (any ratio). Downsampling first low-passes below the new
// Nyquist frequency, so 48 kHz speech does not alias into the 8/16 kHz band the ASR hears.
export class Resampler {
  constructor(from, to, zeros = 8) {
    this.step = from / to; // input samples per output sample
    this.cutoff = 0.5 * Math.min(1, to / from) * 0.92; // cycles per input sample
    this.half = Math.ceil(zeros / (2 * this.cutoff)); // kernel half-width, input samples
    this.buffer = new Float32Array(this.half); // left history starts silent
    this.pos = this.half; // next output's position in `buffer`
  }

  kernel(x) {
    if (x === 0) return 2 * this.cutoff;
    const sinc = Math.sin(2 * Math.PI * this.cutoff * x) / (Math.PI * x);
    const w = 0.5 + 0.5 * Math.cos((Math.PI * x) / this.half); // Hann window
    return sinc * w;
  }

  process(input) {
    const buf = new Float32Array(this.buffer.length + input.length);
    buf.set(this.buffer);
    buf.set(input, this.buffer.length);
    const out = [];
    while (this.pos + this.half < buf.length) {
      const center = Math.floor(this.pos);
      let acc = 0;
      let norm = 0;
      for (let n = center - this.half + 1; n <= center + this.half; n++) {
        const w = this.kernel(this.pos - n);
        acc += buf[n] * w;
        norm += w;
      }
      out.push(norm ? acc / norm : 0);
      this.pos += this.step;
    }
    const keep = Math.floor(this.pos) - this.half; // what the next outputs still need
    this.buffer = buf.slice(keep);
    this.pos -= keep;
    return Float32Array.from(out);
  }
}

export function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = s < 0 ? s * 32768 : s * 32767;
  }
  return out;
}

export function toFloat(pcm) {
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
}

// Mono 16-bit PCM → a WAV file.
export function wav(pcm, rate) {
  const data = pcm.length * 2;
  const view = new DataView(new ArrayBuffer(44 + data));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + data, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, data, true);
  for (let i = 0; i < pcm.length; i++) view.setInt16(44 + i * 2, pcm[i], true);
  return view.buffer;
}

export function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

export function micError(err) {
  if (!window.isSecureContext) return "The microphone needs HTTPS or localhost.";
  if (err?.name === "NotAllowedError") return "Microphone access was refused.";
  if (err?.name === "NotFoundError") return "No microphone found.";
  return `Microphone: ${err?.message || err}`;
}

// The microphone at `rate` Hz: onSamples(Float32Array) about every 20 ms. Returns stop().
export async function openMic(context, rate, onSamples) {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error(micError());
  const stream = await navigator.mediaDevices.getUserMedia({
    // Echo cancellation keeps the bot's voice from the speakers out of the microphone: it
    // would otherwise barge in on itself.
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  await context.audioWorklet.addModule(WORKLET);
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "ivr-capture");
  const resampler = new Resampler(context.sampleRate, rate);
  node.port.onmessage = (m) => onSamples(resampler.process(m.data));
  const mute = context.createGain();
  mute.gain.value = 0; // the node must reach the destination to be run, but not be heard
  source.connect(node).connect(mute).connect(context.destination);
  return () => {
    node.port.onmessage = null;
    source.disconnect();
    node.disconnect();
    stream.getTracks().forEach((t) => t.stop());
  };
}

// Plays PCM16 frames back to back at `rate`; clear() drops what is queued (barge-in).
export class PcmPlayer {
  constructor(context, rate) {
    this.context = context;
    this.rate = rate;
    this.next = 0;
    this.sources = new Set();
  }

  play(pcm) {
    const ctx = this.context;
    const buffer = ctx.createBuffer(1, pcm.length, this.rate); // Web Audio resamples it
    buffer.copyToChannel(toFloat(pcm), 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    // A little lead after a gap absorbs network jitter; back to back otherwise.
    this.next = Math.max(this.next, ctx.currentTime + 0.06);
    source.start(this.next);
    this.next += buffer.duration;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
  }

  clear() {
    for (const source of this.sources) source.stop();
    this.sources.clear();
    this.next = 0;
  }
}
