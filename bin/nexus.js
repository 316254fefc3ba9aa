#!/usr/bin/env node
// The `nexus` command: runs the compiled CLI in dist/ (`npm run build`; `npm install` and `npm test`
// build it first). Plain JavaScript at run time, no TypeScript loader.
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('/dist/cli/main.js')) {
    process.stderr.write('nexus: the compiled CLI (dist/) is missing; run `npm run build` in the nexus folder\n');
    process.exit(2);
  }
  throw err;
}
