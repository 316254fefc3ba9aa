// Entry point of the `nexus` command (bin/nexus.js loads its compiled form, dist/cli/main.js).
// `nexus --version` answers before the command tree (commander and every command module) loads.
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { VERSION } = await import('./version.ts');
  process.stdout.write(`${VERSION}\n`);
} else {
  const { main } = await import('./program.ts');
  const code = await main();
  // serve/start keep running (the daemon holds the event loop); every other command ends here.
  process.exitCode = code;
}
