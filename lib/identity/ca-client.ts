// The ztunnel's client of `meshlet ca`: HTTPS with the mesh bundle pinned as
// the only trusted root, and the ztunnel pod's projected ServiceAccount token
// as bearer. Both files are read on every request, never cached: the kubelet
// rotates the token file well before the token expires, and a rotated bundle
// applies without a restart.
// node:https rather than undici here: importing undici adds ~27 MB of resident
// memory to the ztunnel, whose budget is 100 MB, for a few requests a day.
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { ConfigError } from '../core/errors.ts';
import { CaRefusedError, CaUnreachableError } from './errors.ts';
import type { CertificateIssuer, IssuedCertificate, SignRequest } from './issuer.ts';

export interface CaClientOptions {
  /** Base URL of the CA, e.g. https://10.0.0.1:15012 */
  url: string;
  /** PEM file of the mesh root(s): the CA's serving certificate must chain to one. */
  bundleFile: string;
  /** The ztunnel pod's projected ServiceAccount token (audience meshlet-ca), which the kubelet keeps fresh. */
  tokenFile: string;
  timeoutMs?: number;
}

const TLS_VERIFY = /CERT|SIGNATURE|SELF_SIGNED|ALTNAME|ISSUER/;

export class CaClient implements CertificateIssuer {
  readonly #url: string;
  readonly #bundleFile: string;
  readonly #tokenFile: string;
  readonly #timeoutMs: number;
  #agent: { bundle: string; agent: Agent } | undefined;

  constructor(options: CaClientOptions) {
    this.#url = options.url.replace(/\/+$/, '');
    this.#bundleFile = options.bundleFile;
    this.#tokenFile = options.tokenFile;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async issue(req: SignRequest): Promise<IssuedCertificate> {
    const token = (await this.#read(this.#tokenFile, 'CA token')).trim();
    if (token === '') throw new ConfigError(`the CA token file ${this.#tokenFile} is empty; it should hold the ztunnel pod's projected ServiceAccount token (audience meshlet-ca)`);
    const body = await this.#call('POST', '/v1/sign', { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      JSON.stringify(req.ttlSeconds === undefined ? { csr: req.csrPem } : { csr: req.csrPem, ttlSeconds: req.ttlSeconds }));
    const { certChain, trustBundle } = body;
    if (!Array.isArray(certChain) || !certChain.every((c) => typeof c === 'string') || typeof trustBundle !== 'string') {
      throw new CaUnreachableError(this.#url, 'its answer has no certChain (PEM[]) and trustBundle (PEM); is this URL a meshlet CA?');
    }
    return { certChain, trustBundle };
  }

  /** The CA's current trust bundle, PEM. */
  async bundle(): Promise<string> {
    const { trustBundle } = await this.#call('GET', '/v1/bundle', {}, undefined);
    if (typeof trustBundle !== 'string') throw new CaUnreachableError(this.#url, 'its /v1/bundle answer has no trustBundle; is this URL a meshlet CA?');
    return trustBundle;
  }

  async close(): Promise<void> {
    this.#agent?.agent.destroy();
    this.#agent = undefined;
  }

  async #read(path: string, what: string): Promise<string> {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read the ${what} file ${path}: ${(err as Error).message}`);
    }
  }

  async #dispatcher(): Promise<Agent> {
    const bundle = await this.#read(this.#bundleFile, 'CA bundle');
    if (this.#agent?.bundle !== bundle) {
      this.#agent?.agent.destroy();
      this.#agent = { bundle, agent: new Agent({ ca: bundle, keepAlive: true }) };
    }
    return this.#agent.agent;
  }

  async #call(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: string | undefined): Promise<Record<string, unknown>> {
    const dispatcher = await this.#dispatcher();
    let res: { statusCode: number; text: string };
    try {
      res = await this.#send(`${this.#url}${path}`, method, headers, body, dispatcher);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      const detail = TLS_VERIFY.test(code)
        ? `its certificate does not verify against the bundle ${this.#bundleFile} (${code}); is that file the root from the CA's --state-dir?`
        : `${(err as Error).message}${code ? ` (${code})` : ''}; is \`meshlet ca\` running and listening there?`;
      throw new CaUnreachableError(this.#url, detail, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.text);
    } catch {
      parsed = undefined;
    }
    const json = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as Record<string, unknown> : {};
    if (res.statusCode !== 200) {
      const reason = typeof json.error === 'string' ? json.error : 'unknown';
      const message = typeof json.message === 'string' ? json.message : res.text.trim().slice(0, 200);
      throw new CaRefusedError(res.statusCode, reason, message);
    }
    return json;
  }

  /** One request and its whole body; rejects on a network or TLS failure, or after the timeout. */
  #send(url: string, method: string, headers: Record<string, string>, body: string | undefined, agent: Agent): Promise<{ statusCode: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request(url, { method, headers, agent, timeout: this.#timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('error', reject);
        res.once('end', () => resolve({ statusCode: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      });
      req.once('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${this.#timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.once('error', reject);
      req.end(body);
    });
  }
}
