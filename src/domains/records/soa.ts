// The SOA is not stored: it is synthesised from `zones.serial` and the platform suffix, so that
// every change through the chokepoint (which bumps the serial) changes the SOA with it.

export const SOA_TTL = 3600;
export const SOA_TIMERS = { refresh: 3600, retry: 600, expire: 1209600, minimum: 300 } as const;

export interface Soa {
  /** Primary name server, absolute with trailing dot: `ns1.<platform suffix>.` */
  mname: string;
  /** Responsible mailbox as a name, absolute with trailing dot: `hostmaster.<zone>.` */
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export function synthesiseSoa(zone: string, serial: number, platformSuffix: string): Soa {
  return { mname: `ns1.${platformSuffix}.`, rname: `hostmaster.${zone}.`, serial: serial >>> 0, ...SOA_TIMERS };
}

/** TTL of the SOA placed in the authority section of a negative answer (RFC 2308 section 3). */
export function negativeTtl(): number {
  return Math.min(SOA_TTL, SOA_TIMERS.minimum);
}
