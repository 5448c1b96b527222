// The CA's refusal counts as a test reads them: meshlet_ca_refusals_total by
// reason, from a running CA's /metrics over its own TLS.
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';
import type { RunningCa } from '../../ca/service.ts';

export async function caRefusals(ca: RunningCa): Promise<Map<string, number>> {
  const dispatcher = new Agent({ connect: { ca: await readFile(ca.bundleFile, 'utf8') } });
  try {
    const text = await (await request(`${ca.url}/metrics`, { dispatcher })).body.text();
    return new Map([...text.matchAll(/^meshlet_ca_refusals_total\{reason="([^"]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
  } finally {
    await dispatcher.close();
  }
}
