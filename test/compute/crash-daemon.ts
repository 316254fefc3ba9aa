// The daemon side of the crash test: runs the real server with the compute fabric over DATA,
// says "ready" once it listens, then waits to be killed with SIGKILL.
import { startServer } from '../../src/api/server.ts';

const [dataDir, range] = process.argv.slice(2);
const server = await startServer({ dataDir: dataDir!, host: '127.0.0.1', port: 0, logger: false, integrityIntervalMs: 0, compute: { range: range! } });
process.stdout.write(`ready ${server.url} ${server.compute ? 'compute' : 'no-compute'}\n`);
setInterval(() => undefined, 1 << 30);
