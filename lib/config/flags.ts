// A process's configuration as command-line flags, from one table per
// process: the process parses its flags into its validated config type, and
// whoever launches it (the sandbox's supervisors, later the DaemonSet
// manifests) turns a config back into arguments with configArgs(). A field's
// flag is its name in kebab case, so a config field, its flag and its JSON
// share one name.
import { isIP } from 'node:net';
import { Command, Option } from 'commander';
import { ConfigError } from '../core/errors.ts';
import { parseDuration } from '../core/duration.ts';
import { trustDomainProblem } from '../identity/spiffe.ts';

type FlagValue = string | number | boolean | readonly string[];

export interface FlagSpec<T> {
  /** The value's placeholder, e.g. `<ip>`; absent: a switch (boolean). */
  value?: string;
  description: string;
  required?: boolean;
  default?: T;
  /** How help shows the default, where the parsed value reads worse (seconds for "24h"). */
  defaultLabel?: string;
  /** Checks and converts the text; throws ConfigError naming the flag. */
  parse?: (text: string, flag: string) => T;
}

/** One entry per config field: a field without a flag does not compile. */
export type FlagTable<C> = { readonly [K in keyof C]-?: FlagSpec<NonNullable<C[K]>> };

/** `captureIp4` → `--capture-ip4`. */
export const flagOf = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Adds every flag of `table` to `command`. */
export function addFlags<C>(command: Command, table: FlagTable<C>): Command {
  for (const [key, spec] of Object.entries(table) as [string, FlagSpec<unknown>][]) {
    const flag = flagOf(key);
    const option = new Option(spec.value ? `${flag} ${spec.value}` : flag, spec.description);
    const { parse } = spec;
    if (parse) option.argParser((text: string) => parse(text, flag));
    if (spec.default !== undefined) option.default(spec.default, spec.defaultLabel);
    if (spec.required) option.makeOptionMandatory();
    command.addOption(option);
  }
  return command;
}

/**
 * The arguments under which a process of `table` sees `config`. Absent and
 * false fields are left out (the process applies its defaults); a missing
 * required one is the launcher's bug, refused here rather than by the child.
 */
export function configArgs<C extends object>(table: FlagTable<C>, config: Partial<C>): string[] {
  const args: string[] = [];
  for (const [key, spec] of Object.entries(table) as [string, FlagSpec<unknown>][]) {
    const value = (config as Record<string, FlagValue | undefined>)[key];
    const flag = flagOf(key);
    if (value === undefined && spec.required) throw new ConfigError(`${flag} is required but the launcher's config has no ${key}`);
    if (value === undefined || value === false) continue;
    if (value === true) args.push(flag);
    else if (Array.isArray(value)) args.push(...value.flatMap((v) => [flag, v]));
    else args.push(flag, String(value));
  }
  return args;
}

export const ipFlag = (family: 4 | 6) => (text: string, flag: string): string => {
  if (isIP(text) !== family) throw new ConfigError(`${flag} must be an IPv${family} address, got "${text}"`);
  return text;
};

export const portFlag = ({ zero = false } = {}) => (text: string, flag: string): number => {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < (zero ? 0 : 1) || n > 65535) throw new ConfigError(`${flag} must be a port number${zero ? ' (0 turns it off)' : ''}, got "${text}"`);
  return n;
};

export const secondsFlag = (text: string, flag: string): number => {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0) throw new ConfigError(`${flag} must be a non-negative number of seconds, got "${text}"`);
  return n;
};

/** A duration ("30s", "24h", bare seconds) as seconds. */
export const durationFlag = (text: string, flag: string): number => parseDuration(text, flag);

/** A duration as seconds, or 0 ("0" or "off") for none. */
export const durationOrOffFlag = (text: string, flag: string): number => (/^\s*(0+[smhd]?|off)\s*$/.test(text) ? 0 : parseDuration(text, flag));

/** A positive whole number (a cap, a count). */
export const countFlag = (text: string, flag: string): number => {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive whole number, got "${text}"`);
  return n;
};

/** A positive rate, fractions allowed (per second). */
export const rateFlag = (text: string, flag: string): number => {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new ConfigError(`${flag} must be a positive number per second, got "${text}"`);
  return n;
};

/** A SPIFFE trust domain (a DNS-like name). */
export const trustDomainFlag = (text: string, flag: string): string => {
  const problem = trustDomainProblem(text);
  if (problem) throw new ConfigError(`${flag} ${JSON.stringify(text)}: ${problem}`);
  return text;
};

/** A flag's parser for https://<host>[:<port>] with nothing after it: `what` names the server it reaches, `example` a good value. */
export const httpsOriginFlag = (what: string, example: string) => (text: string, flag: string): string => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'https:' || url.hostname === '' || url.pathname !== '/' || url.search !== '' || url.username !== '') {
    throw new ConfigError(`${flag} ${JSON.stringify(text)} is not https://<host>:<port> of ${what} (e.g. ${example})`);
  }
  return text;
};

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface ObjectRef {
  namespace: string;
  name: string;
}

/** A parser of "<namespace>/<name>" naming `what` (e.g. "a Secret"), as Kubernetes names objects. */
export function objectRefFlag(what: string, example: string): (text: string, flag: string) => ObjectRef {
  return (text, flag) => {
    const [namespace = '', name = '', ...rest] = text.split('/');
    if (rest.length > 0 || !DNS_LABEL.test(namespace) || name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
      throw new ConfigError(`${flag} ${JSON.stringify(text)} is not <namespace>/<name> of ${what} (lower-case DNS names, e.g. ${example})`);
    }
    return { namespace, name };
  };
}
