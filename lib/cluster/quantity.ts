// Kubernetes resource quantities ("100m", "1", "128Mi", "1e3") as exact
// integers of nano-units, so that QoS can sum and compare them the way
// resource.Quantity does ("1" CPU equals "1000m").
import { MeshletError } from '../core/errors.ts';

/** A string that is not a Kubernetes quantity. */
export class QuantityError extends MeshletError {
  constructor(value: string) {
    super('MESHLET_QUANTITY', `${JSON.stringify(value)} is not a Kubernetes quantity (e.g. "500m", "2", "128Mi", "1G", "1e3")`);
  }
}

const QUANTITY_RE = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;
const BINARY: Readonly<Record<string, number>> = { Ki: 1, Mi: 2, Gi: 3, Ti: 4, Pi: 5, Ei: 6 };
const DECIMAL: Readonly<Record<string, number>> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const NANO_EXPONENT = 9;
/**
 * Far beyond any real resource (Kubernetes' own limit is about 2^63), and
 * small enough that a hostile "1e999999999" cannot make the exact arithmetic
 * below run for minutes.
 */
const MAX_TEXT = 128;
const MAX_EXPONENT = 100;

/** The quantity in nano-units (1 = 1_000_000_000n); anything finer than a nano-unit rounds up, as resource.Quantity does. */
export function parseQuantity(value: string | number): bigint {
  const text = String(value).trim();
  const m = text.length > MAX_TEXT ? null : QUANTITY_RE.exec(text);
  if (!m) throw new QuantityError(text.slice(0, MAX_TEXT));
  const [, sign, number, suffix = ''] = m;
  const [whole = '', fraction = ''] = number!.split('.');
  // mantissa × 10^-fraction.length, then scaled by the suffix.
  let mantissa = BigInt(`${whole || '0'}${fraction}`);
  let exponent = NANO_EXPONENT - fraction.length;
  if (suffix in BINARY) mantissa *= 1024n ** BigInt(BINARY[suffix]!);
  else if (suffix in DECIMAL) exponent += DECIMAL[suffix]!;
  else exponent += Number(suffix.slice(1));
  if (Math.abs(exponent) > MAX_EXPONENT) throw new QuantityError(text);
  let nanos: bigint;
  if (exponent >= 0) nanos = mantissa * 10n ** BigInt(exponent);
  else {
    const divisor = 10n ** BigInt(-exponent);
    nanos = mantissa / divisor + (mantissa % divisor === 0n ? 0n : 1n);
  }
  return sign === '-' ? -nanos : nanos;
}
