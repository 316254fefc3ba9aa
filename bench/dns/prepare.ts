// Makes (or completes) the benchmark's data directory alone, for run.ts, micro.ts and serve.ts:
//   npx tsx bench/dns/prepare.ts DATA_DIR [zones]
import { prepare } from './setup.ts';

const { platform } = await prepare(process.argv[2]!, Number(process.argv[3] ?? 1000));
await platform.close();
console.log('done');
