// AudioWorklet: hands the microphone's samples to the page in 20 ms batches (posting every
// 128-sample render quantum would be ~375 messages a second).

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 50); // sampleRate: the AudioWorkletGlobalScope's
    this.buffer = new Float32Array(this.size);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input connected yet
    let offset = 0;
    while (offset < channel.length) {
      const n = Math.min(this.size - this.filled, channel.length - offset);
      this.buffer.set(channel.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === this.size) {
        this.port.postMessage(this.buffer, [this.buffer.buffer]);
        this.buffer = new Float32Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("ivr-capture", Capture);
