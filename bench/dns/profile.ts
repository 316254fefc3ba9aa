// Profiles our server alone on the benchmark's data directory: one process (no workers), run as
//   node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/dns/profile.ts DATA_DIR
// then queried by dnsperf from outside; it prints its port and stops on SIGINT (writing the profile).
import { openDataDir } from '../../src/core/platform.ts';
import { startDnsServer } from '../../src/domains/dns-authority/index.ts';
import { onlineSigner } from '../../src/domains/dnssec/online.ts';

const p = await openDataDir(process.argv[2]!);
const server = await startDnsServer({ store: p.store, rrl: false, dnssec: onlineSigner(p.store, p.dataDir), port: Number(process.argv[3] ?? 0) });
console.log(`port ${server.port}`);
process.once('SIGINT', () => void server.close().then(() => p.close()).then(() => process.exit(0)));
