// The ztunnel's workload certificates: one per identity with a pod on this
// node, obtained before traffic for it is carried, rotated at half its
// lifetime, kept while still valid when the CA is down. Rotation swaps the
// SecureContext that new handshakes pick up; established TLS sessions never
// look at it again, so they keep going.
import { createSecureContext, type SecureContext } from 'node:tls';
import { ConfigError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { newCertificateRequest } from './csr.ts';
import { CertificateUnavailableError } from './errors.ts';
import type { CertificateIssuer } from './issuer.ts';
import { SniIndex } from './sni.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';
import { checkIssuedSvid } from './svid.ts';
import { realScheduler, type Clock, type Scheduler } from '../core/clock.ts';


export interface CertificateStoreOptions {
  issuer: CertificateIssuer;
  /** Lifetime asked of the CA; unset means the CA's default (24 h). */
  ttlSeconds?: number;
  /** First retry delay after a failed request; doubles up to retryMaxMs. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /**
   * How long a certificate is kept after the last pod with its identity left
   * the node (default 30 s; 0 drops at once). A pod restarted or re-enrolled
   * meanwhile needs no new key: an RSA key and CA round trip cost tens of
   * milliseconds of CPU on the enrollment path.
   */
  dropAfterMs?: number;
  log?: Logger;
  /** Milliseconds since the epoch; decides validity, rotation and retry times (default Date.now). */
  clock?: Clock['now'];
  /** Runs rotations, retries and drops (default the real timers). */
  scheduler?: Scheduler;
}

export interface HeldCertificate {
  readonly identity: SpiffeId;
  /** Hex, as Node's X509Certificate prints it. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly rotateAt: Date;
  /** Leaf first, PEM. */
  readonly certChain: readonly string[];
  /** Key, chain and trust bundle (as CA) for tls.createServer/connect. */
  readonly secureContext: SecureContext;
}

/** One row of `meshlet certs`. */
export interface CertificateListing {
  identity: string;
  state: 'valid' | 'pending' | 'expired';
  serial: string | null;
  notBefore: string | null;
  notAfter: string | null;
  /** When the next request is due: rotation, or retry after a failure. */
  nextRotation: string | null;
  lastError: string | null;
}

export interface StoreCounters {
  requestsOk: number;
  requestsFailed: number;
  rotations: number;
}

/** How long a TLS handshake may wait for its identity's certificate retry (under the 10 s handshake timeout). */
const SNI_CERT_WAIT_MS = 5000;

interface Entry {
  readonly id: SpiffeId;
  readonly uri: string;
  held: HeldCertificate | undefined;
  inflight: Promise<HeldCertificate> | undefined;
  timer: unknown;
  /** Set while the identity is no longer wanted: the grace before it is dropped. */
  dropTimer: unknown;
  nextAttempt: Date | undefined;
  failures: number;
  lastError: Error | undefined;
  /** Callers waiting for the scheduled retry's outcome (ensure with waitMs). */
  waiters: { deadline: number; resolve: (held: HeldCertificate) => void; reject: (err: Error) => void }[];
}

// setTimeout fires at once for delays above 2^31-1 ms; longer waits re-arm.
const MAX_TIMER_MS = 2 ** 31 - 1;

const isValid = (held: HeldCertificate | undefined, now: number): held is HeldCertificate =>
  held !== undefined && now >= held.notBefore.getTime() && now < held.notAfter.getTime();

export class CertificateStore {
  readonly #issuer: CertificateIssuer;
  readonly #ttlSeconds: number | undefined;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #dropAfterMs: number;
  readonly #log: Logger | undefined;
  readonly #now: Clock['now'];
  readonly #timers: Scheduler;
  readonly #entries = new Map<string, Entry>();
  readonly #sni = new SniIndex();
  readonly #counters: StoreCounters = { requestsOk: 0, requestsFailed: 0, rotations: 0 };
  #bundle: string[] = [];

  constructor(options: CertificateStoreOptions) {
    this.#issuer = options.issuer;
    this.#ttlSeconds = options.ttlSeconds;
    this.#retryInitialMs = options.retryInitialMs ?? 1000;
    this.#retryMaxMs = options.retryMaxMs ?? 60_000;
    this.#dropAfterMs = options.dropAfterMs ?? 30_000;
    this.#log = options.log;
    this.#now = options.clock ?? Date.now;
    this.#timers = options.scheduler ?? realScheduler;
  }

  /**
   * Resolves with a valid certificate for `id`, requesting one if needed; the
   * identity is kept (and rotated) until a retain() that leaves it out.
   * While a failed request waits for its retry, a burst of connections does
   * not hammer the CA: a caller that can wait `waitMs` gets the scheduled
   * retry's outcome when it is due by then (a pod's first connections while
   * the node's CA bundle is still on its way), the others a
   * CertificateUnavailableError at once.
   */
  ensure(id: SpiffeId, waitMs = 0): Promise<HeldCertificate> {
    const entry = this.#entry(id);
    if (isValid(entry.held, this.#now())) return Promise.resolve(entry.held);
    if (entry.inflight) return entry.inflight;
    if (entry.failures > 0 && entry.lastError) {
      const due = entry.nextAttempt ? entry.nextAttempt.getTime() - this.#now() : Number.POSITIVE_INFINITY;
      if (due <= waitMs) return new Promise((resolve, reject) => entry.waiters.push({ deadline: this.#now() + waitMs, resolve, reject }));
      return Promise.reject(new CertificateUnavailableError(entry.uri,
        `the last request failed (${entry.lastError.message}); next try at ${entry.nextAttempt?.toISOString()}`, { cause: entry.lastError }));
    }
    return this.#request(entry);
  }

  /** Sets the identities this node needs: requests new ones in the background, drops the rest after the grace. */
  retain(ids: Iterable<SpiffeId>): void {
    const wanted = new Map<string, SpiffeId>();
    for (const id of ids) wanted.set(formatSpiffeId(id), id);
    for (const [uri, entry] of this.#entries) {
      if (wanted.has(uri)) {
        this.#timers.clear(entry.dropTimer);
        entry.dropTimer = undefined;
      } else if (this.#dropAfterMs === 0) {
        this.#drop(entry);
      } else {
        entry.dropTimer ??= this.#timers.set(() => this.#drop(entry), this.#dropAfterMs);
      }
    }
    for (const [uri, id] of wanted) {
      if (this.#entries.has(uri)) continue;
      // Failures are recorded on the entry and retried; nobody awaits this one.
      this.#request(this.#entry(id)).catch(() => {});
    }
  }

  /** The context for handshakes as `id`, while its certificate is valid. */
  secureContext(id: SpiffeId): SecureContext | undefined {
    const held = this.#entries.get(formatSpiffeId(id))?.held;
    return isValid(held, this.#now()) ? held.secureContext : undefined;
  }

  /** Which local identity a client named in SNI (see sni.ts). */
  identityForSni(servername: string): SpiffeId | undefined {
    return this.#sni.lookup(servername);
  }

  /** tls.createServer's SNICallback: the certificate of the identity the client asked for. */
  readonly sniCallback = (servername: string, callback: (err: Error | null, ctx?: SecureContext) => void): void => {
    const id = this.#sni.lookup(servername);
    const context = id && this.secureContext(id);
    if (context) return callback(null, context);
    if (!id) return callback(new CertificateUnavailableError(servername, 'the SNI names no identity with a pod on this node'));
    // A pod that just started: its certificate may be on its way, within the handshake's own timeout.
    this.ensure(id, SNI_CERT_WAIT_MS).then((held) => callback(null, held.secureContext), (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))));
  };

  /** The mesh roots from the CA's latest answer, PEM each. */
  trustBundle(): string[] {
    return [...this.#bundle];
  }

  list(): CertificateListing[] {
    const now = this.#now();
    return [...this.#entries.values()].sort((a, b) => a.uri.localeCompare(b.uri)).map((e) => ({
      identity: e.uri,
      state: e.held === undefined ? 'pending' : isValid(e.held, now) ? 'valid' : 'expired',
      serial: e.held?.serial ?? null,
      notBefore: e.held?.notBefore.toISOString() ?? null,
      notAfter: e.held?.notAfter.toISOString() ?? null,
      nextRotation: e.nextAttempt?.toISOString() ?? null,
      lastError: e.lastError?.message ?? null,
    }));
  }

  get counters(): Readonly<StoreCounters> {
    return { ...this.#counters };
  }

  /** Stops all timers; contexts already handed out keep working. */
  close(): void {
    for (const entry of this.#entries.values()) this.#drop(entry);
  }

  #entry(id: SpiffeId): Entry {
    const uri = formatSpiffeId(id);
    let entry = this.#entries.get(uri);
    if (!entry) {
      entry = { id, uri, held: undefined, inflight: undefined, timer: undefined, dropTimer: undefined, nextAttempt: undefined, failures: 0, lastError: undefined, waiters: [] };
      this.#entries.set(uri, entry);
      this.#sni.add(id);
    }
    return entry;
  }

  #drop(entry: Entry): void {
    this.#timers.clear(entry.timer);
    this.#timers.clear(entry.dropTimer);
    this.#entries.delete(entry.uri);
    this.#sni.delete(entry.id);
    for (const w of entry.waiters.splice(0)) w.reject(new CertificateUnavailableError(entry.uri, 'this node no longer hosts the identity (or the ztunnel is stopping)'));
    this.#log?.info('certificate dropped', { identity: entry.uri });
  }

  #request(entry: Entry): Promise<HeldCertificate> {
    if (entry.inflight) return entry.inflight;
    this.#timers.clear(entry.timer);
    entry.nextAttempt = undefined;
    const live = () => this.#entries.get(entry.uri) === entry;
    const attempt = this.#obtain(entry.id).then(
      (held) => {
        this.#counters.requestsOk++;
        if (!live()) return held;
        if (entry.held) this.#counters.rotations++;
        this.#log?.info(entry.held ? 'certificate rotated' : 'certificate issued', {
          identity: entry.uri, serial: held.serial, notAfter: held.notAfter.toISOString(), rotateAt: held.rotateAt.toISOString(),
        });
        entry.held = held;
        entry.failures = 0;
        entry.lastError = undefined;
        this.#schedule(entry, held.rotateAt);
        for (const w of entry.waiters.splice(0)) w.resolve(held);
        return held;
      },
      (err: unknown) => {
        this.#counters.requestsFailed++;
        const error = err instanceof Error ? err : new Error(String(err));
        if (live()) {
          entry.failures++;
          entry.lastError = error;
          // A ConfigError is the ztunnel's own (its CA bundle not written yet by the kubelet): the CA was not asked, so there is no backing off.
          const delay = error instanceof ConfigError ? this.#retryInitialMs : Math.min(this.#retryInitialMs * 2 ** (entry.failures - 1), this.#retryMaxMs);
          this.#schedule(entry, new Date(this.#now() + delay));
          this.#log?.warn('certificate request failed', {
            identity: entry.uri, error: error.message, retryInMs: delay,
            keeping: isValid(entry.held, this.#now()) ? { serial: entry.held.serial, notAfter: entry.held.notAfter.toISOString() } : null,
          });
        }
        const unavailable = new CertificateUnavailableError(entry.uri, `the CA request failed: ${error.message}`, { cause: error });
        // Those who can wait for the next retry keep waiting.
        const next = live() && entry.nextAttempt ? entry.nextAttempt.getTime() : Number.POSITIVE_INFINITY;
        const waiting = entry.waiters.splice(0);
        for (const w of waiting) {
          if (next <= w.deadline) entry.waiters.push(w);
          else w.reject(unavailable);
        }
        throw unavailable;
      },
    ).finally(() => {
      entry.inflight = undefined;
    });
    entry.inflight = attempt;
    return attempt;
  }

  async #obtain(id: SpiffeId): Promise<HeldCertificate> {
    const { keyPem, csrPem } = await newCertificateRequest(id);
    const issued = await this.#issuer.issue(this.#ttlSeconds === undefined ? { csrPem } : { csrPem, ttlSeconds: this.#ttlSeconds });
    const receivedAt = this.#now();
    const { leaf, chain, bundle } = checkIssuedSvid(id, keyPem, issued.certChain, issued.trustBundle);
    this.#bundle = bundle;
    const notBefore = leaf.validFromDate;
    const notAfter = leaf.validToDate;
    // Half of the lifetime left when it arrived, so a backdated notBefore
    // cannot schedule the rotation in the past.
    const start = Math.max(notBefore.getTime(), receivedAt);
    return {
      identity: id,
      serial: leaf.serialNumber,
      notBefore,
      notAfter,
      rotateAt: new Date(start + (notAfter.getTime() - start) / 2),
      certChain: chain,
      secureContext: createSecureContext({ key: keyPem, cert: chain.join(''), ca: bundle, minVersion: 'TLSv1.3' }),
    };
  }

  #schedule(entry: Entry, at: Date): void {
    this.#timers.clear(entry.timer);
    entry.nextAttempt = at;
    const fire = () => {
      const left = at.getTime() - this.#now();
      if (left > 0) {
        entry.timer = this.#timers.set(fire, Math.min(left, MAX_TIMER_MS));
        return;
      }
      this.#request(entry).catch(() => {});
    };
    entry.timer = this.#timers.set(fire, Math.min(Math.max(0, at.getTime() - this.#now()), MAX_TIMER_MS));
  }
}
