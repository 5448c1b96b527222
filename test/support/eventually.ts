// The one polling helper of every suite: waits for a condition that other
// processes, timers or I/O make true, never for a fixed time.

/** First poll after this; the gap doubles up to MAX_INTERVAL_MS, so fast conditions return fast and slow ones are not hammered. */
const FIRST_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 200;

/**
 * Polls until `check` returns a value other than undefined/false, and returns
 * it. A check that throws counts as "not yet"; the last error is quoted when
 * the wait times out.
 */
export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let interval = FIRST_INTERVAL_MS; ; interval = Math.min(interval * 2, MAX_INTERVAL_MS)) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${last instanceof Error ? last.message : String(last)}`}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
