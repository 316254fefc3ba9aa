// Geo and policy routing: each gateway node has a region (`nexus serve --region eu-west`), and an
// IMVU whose jurisdiction (gate 9) binds where its data may be handled has its private and
// restricted routes served only by gateways in permitted regions. A gateway elsewhere refuses them
// with 451 and a body that says why; public routes are served everywhere (they carry nothing the
// IMVU has not published).
import type { JURISDICTIONS } from '../../core/policy/vocabulary.ts';

/** A region: a two-letter area (eu, us, uk, ch, ...) and optional zone labels, e.g. eu-west-1. */
export const REGION_RE = /^[a-z]{2}(-[a-z0-9]{1,16}){0,3}$/;

/**
 * Jurisdictions with a data-residency rule, and the areas whose gateways may serve their private
 * and restricted routes. The GDPR family keeps personal data in the EEA (transfers elsewhere need
 * safeguards the platform does not arrange), the UK and Swiss laws admit their own area and the
 * EEA (mutual adequacy). Others have no residency rule here: any region serves them.
 */
export const RESIDENCY: Partial<Record<(typeof JURISDICTIONS)[number], readonly string[]>> = {
  'EU-GDPR': ['eu'],
  'UK-GDPR': ['uk', 'eu'],
  'CH-FADP': ['ch', 'eu'],
};

export function checkRegion(region: string): string {
  if (!REGION_RE.test(region)) throw new Error(`region ${region}: must be a two-letter area and optional labels, e.g. eu-west or us-east-1`);
  return region;
}

/**
 * Whether a gateway in `region` (undefined: not set) may serve an IMVU's private and restricted
 * routes, and the areas that may when the answer is no.
 */
export function regionPermits(jurisdiction: string, region: string | undefined): { ok: boolean; areas: readonly string[] } {
  const areas = RESIDENCY[jurisdiction as keyof typeof RESIDENCY];
  if (!areas) return { ok: true, areas: [] };
  return { ok: region !== undefined && areas.includes(region.slice(0, 2)), areas };
}
