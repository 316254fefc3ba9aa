// Compute ranges for the suites' daemons and drivers: a /24 of 10.160.0.0/11, beside the default
// range (10.96.0.0/11) rather than inside it, so a daemon on the default range (a developer's, or a
// suite's that gives none) never keeps a suite's fabric off, and none that a live platform on this
// host has claimed (src/compute/fabric/range-claim.ts), so concurrent suites do not meet.
import { randomInt } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rangesOverlap } from '../../src/compute/fabric/addresses.ts';
import { CLAIMS_DIR } from '../../src/compute/fabric/range-claim.ts';

const given: string[] = [];

function claimed(): string[] {
  if (!existsSync(CLAIMS_DIR)) return [];
  return readdirSync(CLAIMS_DIR)
    .filter((f) => f.endsWith('.json'))
    .flatMap((f) => {
      try {
        return [(JSON.parse(readFileSync(join(CLAIMS_DIR, f), 'utf8')) as { range: string }).range];
      } catch {
        return [];
      }
    });
}

/** A /24 that no range this process gave out and no claim on this host overlaps. */
export function testComputeRange(): string {
  const taken = [...given, ...claimed()];
  for (;;) {
    const range = `10.${160 + randomInt(32)}.${randomInt(256)}.0/24`;
    const overlaps = (t: string) => {
      try {
        return rangesOverlap(t, range);
      } catch {
        return false;
      }
    };
    if (taken.some(overlaps)) continue;
    given.push(range);
    return range;
  }
}
