// Istio's four request metrics (a counter, three histograms over one label
// set), kept per series as plain numbers and rendered in Prometheus's text
// format, line for line as prom-client renders its own. prom-client's
// labelled children validate and hash all 25 labels again on every inc() and
// observe(): ~15 µs a request for the four, the largest share of the
// waypoint's telemetry cost. Here a request costs one key and four updates.

/** One request's contribution. */
export interface RequestSample {
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
}

export interface RequestSeriesNames {
  total: { name: string; help: string };
  duration: { name: string; help: string };
  requestBytes: { name: string; help: string };
  responseBytes: { name: string; help: string };
}

class HistogramCells {
  /** Per bucket, not cumulative; a value above the last bound counts only in `count`. */
  readonly buckets: number[];
  sum = 0;
  count = 0;

  constructor(bounds: number) {
    this.buckets = new Array<number>(bounds).fill(0);
  }

  observe(bounds: readonly number[], value: number): void {
    // As prom-client's observe(): a value that is not a number is the caller's bug.
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.buckets[i]! += 1;
        break;
      }
    }
    this.sum += value;
    this.count += 1;
  }
}

interface Series {
  /** `name="value",…`, escaped, in the labels' own order. */
  readonly labelText: string;
  total: number;
  readonly duration: HistogramCells;
  readonly requestBytes: HistogramCells;
  readonly responseBytes: HistogramCells;
}

// prom-client's escaping (registry.js escapeString, escapeLabelValue) and number format (util.js getValueAsString).
const escapeText = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (s: string): string => escapeText(s).replace(/"/g, '\\"');
const numberText = (v: number): string => (Number.isNaN(v) ? 'Nan' : Number.isFinite(v) ? `${v}` : v < 0 ? '-Inf' : '+Inf');

export class RequestSeries {
  readonly #names: RequestSeriesNames;
  readonly #bounds: readonly number[];
  /** Keyed by the label values in label order; bounded by the cluster's topology, as the labels are (labels.ts). */
  readonly #series = new Map<string, Series>();

  constructor(names: RequestSeriesNames, buckets: readonly number[]) {
    this.#names = names;
    this.#bounds = [...buckets].sort((a, b) => a - b);
  }

  /** `key` identifies the labels (labels.ts requestSeriesKey); `labels` is called only when the series is new. */
  add(key: string, labels: () => Readonly<Record<string, string>>, sample: RequestSample): void {
    let s = this.#series.get(key);
    if (!s) {
      const n = this.#bounds.length;
      const labelText = Object.entries(labels()).map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(',');
      s = { labelText, total: 0, duration: new HistogramCells(n), requestBytes: new HistogramCells(n), responseBytes: new HistogramCells(n) };
      this.#series.set(key, s);
    }
    s.total += 1;
    s.duration.observe(this.#bounds, sample.durationMs);
    s.requestBytes.observe(this.#bounds, sample.requestBytes);
    s.responseBytes.observe(this.#bounds, sample.responseBytes);
  }

  /** The four metrics' text blocks, in prom-client's layout (HELP, TYPE, one line per value). */
  blocks(): string[] {
    const { total, duration, requestBytes, responseBytes } = this.#names;
    const series = [...this.#series.values()];
    const counter = [...header(total.name, total.help, 'counter'), ...series.map((s) => `${total.name}{${s.labelText}} ${numberText(s.total)}`)];
    return [
      counter.join('\n'),
      this.#histogram(duration, series, (s) => s.duration),
      this.#histogram(requestBytes, series, (s) => s.requestBytes),
      this.#histogram(responseBytes, series, (s) => s.responseBytes),
    ];
  }

  #histogram(meta: { name: string; help: string }, series: readonly Series[], cells: (s: Series) => HistogramCells): string {
    const lines = header(meta.name, meta.help, 'histogram');
    for (const s of series) {
      const h = cells(s);
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += h.buckets[i]!;
        lines.push(`${meta.name}_bucket{le="${this.#bounds[i]}",${s.labelText}} ${numberText(acc)}`);
      }
      lines.push(`${meta.name}_bucket{le="+Inf",${s.labelText}} ${numberText(h.count)}`);
      lines.push(`${meta.name}_sum{${s.labelText}} ${numberText(h.sum)}`);
      lines.push(`${meta.name}_count{${s.labelText}} ${numberText(h.count)}`);
    }
    return lines.join('\n');
  }
}

function header(name: string, help: string, type: string): string[] {
  const n = escapeText(name);
  return [`# HELP ${n} ${escapeText(help)}`, `# TYPE ${n} ${type}`];
}
