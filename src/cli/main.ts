// Entry point of the `nexus` command (bin/nexus.js loads this through tsx).
import { main } from './program.ts';

const code = await main();
// serve/start keep running (the daemon holds the event loop); every other command ends here.
process.exitCode = code;
