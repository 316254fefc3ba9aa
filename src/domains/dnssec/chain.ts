import type { NsecData } from 'dns-packet';
import type { Zone } from '../dns-authority/zone.ts';
import { negativeTtl } from '../records/soa.ts';
import { labelsOf, nameWire, rdataWire, typeCode } from './wire.ts';

// The NSEC chain of a compiled zone (RFC 4034 section 4, RFC 4035 2.3): one NSEC per owner name
// with authoritative data or a delegation, in canonical order, the last pointing back to the apex.
// Empty non-terminals and names below a delegation (glue) are not in it. The same chain is sent
// in zone transfers (signed-zone.ts) and, by default, proves denials in online answers
// (online.ts): what an AXFR already publishes, nothing more.
//
// Built once per compiled zone (a compiled zone is one serial: a committed change makes a new
// one, and with it a new chain); a lookup of the NSEC covering a name is a binary search over
// the owners' canonical sort keys.

export interface ChainLink {
  /** Owner (absolute, lower case, no trailing dot). */
  name: string;
  /** Owner in canonical wire form. */
  wire: Buffer;
  data: NsecData;
  /** The NSEC RDATA on the wire (next name uncompressed, then the type bitmap). */
  rdata: Buffer;
  /** The owner's canonical sort key (`canonicalKey`). */
  key: string;
}

/**
 * A string whose code-unit order is the canonical name order of RFC 4034 6.1: labels from the
 * right, each as its lower-cased octets (each octet shifted up by one so that the terminator
 * 0 sorts before any octet: a label sorts before the labels it is a prefix of, a name before
 * its descendants).
 */
export function canonicalKey(name: string): string {
  const n = name.endsWith('.') ? name.length - 1 : name.length;
  // ASCII names (every name a query can reach here: the responder's reader takes printable ASCII)
  // written into `keyScratch` and made one string; a string per character cost most of a random
  // name's denial in garbage. A label's octets then are its characters, and each key character
  // (an octet plus one) at most 0x80, one latin1 byte.
  if (n === 0) return '';
  if (2 * n + 1 <= keyScratch.length) {
    let at = 0;
    let end = n;
    for (;;) {
      const dot = end > 0 ? name.lastIndexOf('.', end - 1) : -1;
      for (let j = dot + 1; j < end; j++) {
        let c = name.charCodeAt(j);
        if (c > 0x7f) return canonicalKeyOf(name);
        if (c >= 0x41 && c <= 0x5a) c |= 0x20;
        keyScratch[at++] = c + 1;
      }
      keyScratch[at++] = 0;
      if (dot < 0) break;
      end = dot;
    }
    return keyScratch.toString('latin1', 0, at);
  }
  return canonicalKeyOf(name);
}

/** Where `canonicalKey` writes an ASCII name's key: an octet per character plus one per label. */
const keyScratch = Buffer.allocUnsafeSlow(1024);

/** `canonicalKey` for any name (UTF-8 labels). */
function canonicalKeyOf(name: string): string {
  const labels = labelsOf(name);
  let key = '';
  for (let i = labels.length - 1; i >= 0; i--) {
    const label = labels[i]!;
    let ascii = true;
    for (let j = 0; j < label.length; j++) if (label.charCodeAt(j) > 0x7f) ascii = false;
    const bytes = ascii ? undefined : Buffer.from(label, 'utf8');
    const n = bytes ? bytes.length : label.length;
    for (let j = 0; j < n; j++) {
      let c = bytes ? bytes[j]! : label.charCodeAt(j);
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      key += String.fromCharCode(c + 1);
    }
    key += '\u0000';
  }
  return key;
}

export class NsecChain {
  readonly links: readonly ChainLink[];
  private readonly byName = new Map<string, number>();
  /** `wildcardCover` by encloser: bounded by the zone's names (an encloser exists). */
  private readonly wildcards = new Map<string, ChainLink>();

  /** `dnskey`: the apex holds a DNSKEY RRset (a signed zone). */
  constructor(
    readonly zone: Zone,
    dnskey = true,
  ) {
    const owners: { name: string; key: string; types: string[] }[] = [];
    for (const [name, sets] of zone.owners()) {
      const cut = zone.delegationOf(name);
      if (cut && cut !== name) continue;
      let types = [...sets.keys()];
      if (cut === name) types = types.filter((t) => t === 'NS' || t === 'DS');
      if (name === zone.name && dnskey) types.push('DNSKEY');
      types.sort((a, b) => typeCode(a) - typeCode(b));
      owners.push({ name, key: canonicalKey(name), types });
    }
    owners.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.links = owners.map((o, i) => {
      const data: NsecData = { nextDomain: owners[(i + 1) % owners.length]!.name, rrtypes: [...o.types, 'RRSIG', 'NSEC'] };
      this.byName.set(o.name, i);
      return { name: o.name, wire: nameWire(o.name), data, rdata: rdataWire('NSEC', data), key: o.key };
    });
  }

  /** TTL of every NSEC (RFC 9077: the lesser of the SOA's TTL and its MINIMUM). */
  get ttl(): number {
    return negativeTtl();
  }

  /** The link owned by `name`, if `name` is in the chain. */
  at(name: string): ChainLink | undefined {
    const i = this.byName.get(name);
    return i === undefined ? undefined : this.links[i];
  }

  /**
   * The link whose owner is `name` or, for a name not in the chain, the one that covers it: the
   * last owner before it in canonical order (the apex sorts first in its zone, so a name of the
   * zone always has one).
   */
  covering(name: string): ChainLink {
    const own = this.at(name);
    if (own) return own;
    const key = canonicalKey(name);
    let lo = 0;
    let hi = this.links.length - 1;
    // The greatest i with links[i].key < key.
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.links[mid]!.key < key) lo = mid;
      else hi = mid - 1;
    }
    return this.links[lo]!;
  }

  /**
   * The link that proves what the zone holds at the wildcard of `encloser` (a closest encloser:
   * a name of the zone): `covering('*.' + encloser)`, remembered per encloser, since every random
   * name under one encloser asks the same.
   */
  wildcardCover(encloser: string): ChainLink {
    let link = this.wildcards.get(encloser);
    if (!link) {
      link = this.covering(`*.${encloser}`);
      if (this.wildcards.size < this.links.length + 64) this.wildcards.set(encloser, link);
    }
    return link;
  }
}

const chains = new WeakMap<Zone, NsecChain>();

/** The chain of a compiled zone with a DNSKEY at its apex, built on first use and kept with the zone. */
export function chainOf(zone: Zone): NsecChain {
  let c = chains.get(zone);
  if (!c) chains.set(zone, (c = new NsecChain(zone)));
  return c;
}
