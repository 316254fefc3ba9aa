// The YAML form of a routing policy (spec: routing-policy.yaml), for `nexus route set --policy`.
import { parse as parseYaml } from 'yaml';
import { TrafficPolicy, formatZodError } from '../../core/policy/commands.ts';
import { policyProblems, type Policy } from './policy.ts';

/** Bound on a policy file: far above 3 x 256 routes of ordinary size. */
export const MAX_POLICY_BYTES = 512 * 1024;

/**
 * A routing-policy.yaml (public_routes / private_routes / restricted_routes, each a list of
 * routes) as the `route.set` policy. Unknown keys are refused, like the command's schema does.
 */
export function policyFromYaml(text: string): Policy {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw new Error(`policy file is larger than ${MAX_POLICY_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 0, prettyErrors: false });
  } catch (err) {
    throw new Error(`policy file is not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('policy file must be a mapping of public_routes, private_routes and restricted_routes');
  const d = doc as Record<string, unknown>;
  const known = new Set(['public_routes', 'private_routes', 'restricted_routes']);
  const unknown = Object.keys(d).filter((k) => !known.has(k));
  if (unknown.length) throw new Error(`policy file: unknown key ${unknown.join(', ')} (expected public_routes, private_routes, restricted_routes)`);
  const policy = { public: d.public_routes ?? [], private: d.private_routes ?? [], restricted: d.restricted_routes ?? [] };
  const r = TrafficPolicy.safeParse(policy);
  if (!r.success) throw new Error(`policy file: ${formatZodError(r.error)}`);
  const problems = policyProblems(r.data);
  if (problems.length) throw new Error(`policy file: ${problems.join('; ')}`);
  return r.data;
}
