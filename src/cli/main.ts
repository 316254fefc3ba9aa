// Entry point of the `nexus` command (bin/nexus.js loads its compiled form, dist/cli/main.js).
import { main } from './program.ts';

const code = await main();
// serve/start keep running (the daemon holds the event loop); every other command ends here.
process.exitCode = code;
