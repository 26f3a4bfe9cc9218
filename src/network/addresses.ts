// IPv4/IPv6 addresses as bigints: parsing, printing, CIDRs, ranges and EUI-64. Used by IPAM
// (subnets.ts), ports and the areas that validate prefixes (security group rules, routes).

export type IpVersion = 4 | 6;
export interface Address { version: IpVersion; value: bigint }
export interface Cidr { version: IpVersion; network: bigint; prefixlen: number }

const BITS: Record<IpVersion, number> = { 4: 32, 6: 128 };
export const bitsOf = (version: IpVersion) => BITS[version];

/** Parses a textual IPv4 or IPv6 address; undefined when it is not one. */
export function parseAddress(text: unknown): Address | undefined {
  if (typeof text !== 'string') return undefined;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) {
    const parts = text.split('.').map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    return { version: 4, value: parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n) };
  }
  if (!text.includes(':') || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let body = text;
  // A trailing dotted quad (::ffff:1.2.3.4) stands for the last two groups.
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    const v4 = parseAddress(body.slice(lastColon + 1));
    if (!v4 || v4.version !== 4) return undefined;
    body = `${body.slice(0, lastColon + 1)}${(v4.value >> 16n).toString(16)}:${(v4.value & 0xffffn).toString(16)}`;
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const group = (s: string) => (s === '' ? [] : s.split(':'));
  const head = group(halves[0]);
  const rest = halves.length === 2 ? group(halves[1]) : [];
  if ([...head, ...rest].some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const total = 8;
  let groups: bigint[];
  if (halves.length === 2) {
    const missing = total - head.length - rest.length;
    if (missing < 1) return undefined;
    groups = [...head.map((g) => BigInt(`0x${g}`)), ...Array(missing).fill(0n), ...rest.map((g) => BigInt(`0x${g}`))];
  } else {
    if (head.length !== total) return undefined;
    groups = head.map((g) => BigInt(`0x${g}`));
  }
  return { version: 6, value: groups.reduce((acc, g) => (acc << 16n) | g, 0n) };
}

/** The canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as ::). */
export function formatAddress(version: IpVersion, value: bigint): string {
  if (version === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let bestStart = -1; let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i; while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Normalises an address text (e.g. IPv6 to its short form); undefined when invalid. */
export function canonicalAddress(text: unknown): string | undefined {
  const parsed = parseAddress(text);
  return parsed && formatAddress(parsed.version, parsed.value);
}

/** Parses "a.b.c.d/n" (or an address alone, as a host route). `strict` refuses host bits set. */
export function parseCidr(text: unknown, options: { strict?: boolean } = {}): Cidr | undefined {
  if (typeof text !== 'string') return undefined;
  const [addr, len, extra] = text.split('/');
  if (extra !== undefined) return undefined;
  const parsed = parseAddress(addr);
  if (!parsed) return undefined;
  const bits = BITS[parsed.version];
  const prefixlen = len === undefined ? bits : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > bits) return undefined;
  const network = parsed.value & maskOf(parsed.version, prefixlen);
  if (options.strict && network !== parsed.value) return undefined;
  return { version: parsed.version, network, prefixlen };
}

export function maskOf(version: IpVersion, prefixlen: number): bigint {
  const bits = BigInt(BITS[version]);
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefixlen))) - 1n);
}

export const formatCidr = (cidr: Cidr) => `${formatAddress(cidr.version, cidr.network)}/${cidr.prefixlen}`;
export const sizeOf = (cidr: Cidr) => 1n << BigInt(BITS[cidr.version] - cidr.prefixlen);
export const lastOf = (cidr: Cidr) => cidr.network + sizeOf(cidr) - 1n;

export function contains(cidr: Cidr, address: Address): boolean {
  return cidr.version === address.version && address.value >= cidr.network && address.value <= lastOf(cidr);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.version === b.version && a.network <= lastOf(b) && b.network <= lastOf(a);
}

/** The modified EUI-64 interface address of `mac` in an IPv6 /64 prefix (what SLAAC gives a port). */
export function eui64(prefix: Cidr, mac: string): bigint {
  const bytes = mac.split(':').map((b) => parseInt(b, 16));
  const id = [bytes[0] ^ 0x02, bytes[1], bytes[2], 0xff, 0xfe, bytes[3], bytes[4], bytes[5]];
  return prefix.network | id.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}
