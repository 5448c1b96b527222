// A request body as the router sends it: streamed to the current try as it
// arrives (a gRPC stream never waits for its end), and kept, up to a bound,
// so that a retry can send it again from the start and a mirror can have a
// copy. Past the bound nothing is kept: the request is not retried and not
// mirrored (Envoy's retry buffer limit works the same way), so one large
// upload never costs more than the bound.
import { PassThrough, type Readable } from 'node:stream';

/** Per request. Envoy buffers up to its connection buffer limit (1 MiB); most bodies worth retrying are far smaller. */
export const DEFAULT_MAX_BUFFERED_BODY_BYTES = 64 * 1024;

const ignore = () => {};

export class RequestBody {
  readonly #source: Readable;
  readonly #limit: number;
  #chunks: Buffer[] = [];
  #size = 0;
  #overflowed = false;
  #failed = false;
  #ended = false;
  #started = false;
  #sink: PassThrough | undefined;
  #waitingForDrain: (() => void) | undefined;
  readonly #done: Promise<boolean>;
  #settle!: (ended: boolean) => void;

  constructor(source: Readable, limit = DEFAULT_MAX_BUFFERED_BODY_BYTES) {
    this.#source = source;
    this.#limit = limit;
    this.#done = new Promise((resolve) => (this.#settle = resolve));
  }

  /** Whether a new try can be sent the whole body. */
  get replayable(): boolean {
    return !this.#overflowed && !this.#failed;
  }

  /** Resolves true once the client's body has ended, false if it broke off. */
  whenEnded(): Promise<boolean> {
    return this.#done;
  }

  /** The whole body, once it has ended within the bound; undefined otherwise (a mirror then goes without). */
  async complete(): Promise<Buffer | undefined> {
    // Read here when no try took the body (the primary was answered locally).
    if (!this.#started) this.#start();
    const ended = await this.#done;
    return ended && !this.#overflowed ? Buffer.concat(this.#chunks) : undefined;
  }

  /**
   * The body for one try, from its first byte; the previous try's stream is
   * ended abruptly. Undefined once the body is no longer replayable.
   */
  open(): Readable | undefined {
    if (!this.replayable) return undefined;
    const previous = this.#sink;
    const sink = new PassThrough();
    sink.on('error', ignore);
    for (const chunk of this.#chunks) sink.write(chunk);
    if (this.#ended) sink.end();
    this.#sink = sink;
    if (previous) {
      if (this.#waitingForDrain) previous.off('drain', this.#waitingForDrain);
      this.#waitingForDrain = undefined;
      previous.destroy();
      this.#source.resume();
    }
    if (!this.#started) this.#start();
    return sink;
  }

  #start(): void {
    this.#started = true;
    const source = this.#source;
    source.on('data', (data: Buffer | string) => {
      const chunk = typeof data === 'string' ? Buffer.from(data) : data;
      if (!this.#overflowed) {
        this.#size += chunk.length;
        if (this.#size > this.#limit) {
          this.#overflowed = true;
          this.#chunks = [];
        } else {
          this.#chunks.push(chunk);
        }
      }
      const sink = this.#sink;
      if (!sink || sink.destroyed) return;
      if (!sink.write(chunk)) {
        source.pause();
        const resume = () => {
          this.#waitingForDrain = undefined;
          source.resume();
        };
        this.#waitingForDrain = resume;
        sink.once('drain', resume);
      }
    });
    source.once('end', () => {
      this.#ended = true;
      this.#sink?.end();
      this.#settle(true);
    });
    const broke = () => {
      if (this.#ended) return;
      this.#failed = true;
      this.#sink?.destroy(new Error('the client\'s request body broke off'));
      this.#settle(false);
    };
    source.once('error', broke);
    source.once('close', broke);
    source.resume();
  }
}
