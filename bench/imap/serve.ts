// Our IMAP server alone in its own process (as the daemon runs it, apart from its clients), for
// bench/imap/run.ts and for `node --cpu-prof`. Prints its port on stdout; SIGTERM stops it.
// Run: node --import tsx bench/imap/serve.ts DATA_DIR USER PASS
import { startImapServer } from '../../src/mail/imap/server.ts';

const [dataDir, user, pass] = process.argv.slice(2) as [string, string, string];
const server = await startImapServer({
  dataDir, port: 0, plaintextAuth: true,
  authenticate: async (u, p) => (u === user && p === pass ? { imvu: 'IMVU-001', address: user } : null),
});
process.stdout.write(`${server.port}\n`);
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
