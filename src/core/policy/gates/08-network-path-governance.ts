import { deny, pass, type Gate } from '../gate.ts';
import { policyProblems, type Policy } from '../../../network/routes/policy.ts';

// A route's backend is a port of the IMVU's own workload, never an address: the gateway derives
// the address from the IMVU's sequence number (src/network/gateway/table.ts), so a policy cannot
// send traffic to another IMVU, the host's loopback or the daemon (threat 2.1, SSRF).
export const gate: Gate = {
  number: 8,
  name: 'Network Path Governance',
  guards: ['route.set'],
  enforcedIn: 'src/core/policy/gates/08-network-path-governance.ts (backends are the IMVU\'s own workload) and src/network/gateway (serves only the ledger\'s route table)',
  status: 'enforced',
  async check(ctx) {
    const problems = policyProblems(ctx.body.policy as Policy);
    if (problems.length) return deny(8, problems.slice(0, 4).join('; ').slice(0, 900));
    return pass(8, 'every backend is a port of the IMVU\'s own workload');
  },
};
