import { deny, pass, type Gate } from '../gate.ts';

// No IMVU reaches another's data, processes, mail or traffic. The kernel and the systems enforce
// it, each proved by a test that tries from inside one IMVU:
//   compute (src/compute/fabric): own user/pid/mount/network namespaces and uid range, data volume
//     0700 to its mapped root, a /30 per IMVU with nothing forwarded (test/isolation/compute.test.ts);
//   mail (src/mail): one Maildir root per login, symlinks refused, every mailbox-taking IMAP
//     command tried on names reaching another IMVU (test/imap/isolation.test.ts);
//   network (src/network): a route's backend is a port of the IMVU's own workload only (gate 8),
//     each Host served by its own IMVU's backend (test/gateway/gateway.test.ts).
// Here: a workload image may not be read from another IMVU's directory (its snapshots, its data):
// the path is refused by name here, and by its real path in the fabric (src/compute/fabric/rootfs.ts).
const OTHER_IMVU_DIR = /(^|\/)imvus\/(IMVU-\d{3,9})(\/|$)/g;

export const gate: Gate = {
  number: 16,
  name: 'No Cross-IMVU Leakage',
  enforcedIn:
    'src/compute/fabric (namespaces, uid range, data volume 0700, /30 per IMVU; images only from outside other IMVUs\' directories) + src/mail (one Maildir root per login) + src/network (own backends only) + gates/16-no-cross-imvu-leakage.ts',
  guards: ['imvu.create', 'compute.deploy'],
  status: 'enforced',
  async check(ctx) {
    if (ctx.command.type === 'imvu.create') return pass(16, 'the IMVU gets its own namespaces, uid range, /30, data volume and Maildir root');
    const image = (ctx.body.blueprint as { image?: unknown } | undefined)?.image;
    const path = typeof image === 'string' ? /^oci:(.+):[^:]+$/.exec(image)?.[1] : undefined;
    if (path !== undefined) {
      for (const m of path.matchAll(OTHER_IMVU_DIR))
        if (m[2] !== ctx.body.imvu) return deny(16, `the image ${String(image).slice(0, 200)} is read from ${m[2]}'s directory: a workload never takes another IMVU's files`);
    }
    return pass(16, `the workload of ${String(ctx.body.imvu)} runs in its own namespaces and uid range`);
  },
};
