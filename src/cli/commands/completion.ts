// `nexus completion bash|zsh|fish` and `nexus man`: generated from the program's command tree at
// run time (src/cli/completion.ts), so they list exactly the commands and options that exist.
import { Argument, Command } from 'commander';
import { VERSION } from '../version.ts';

function root(c: Command): Command {
  let r = c;
  while (r.parent) r = r.parent;
  return r;
}

export function completionCommand(): Command {
  return new Command('completion')
    .description('print a shell completion script generated from the command definitions')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh', 'fish']))
    .addHelpText('after', '\nLoad it: bash `source <(nexus completion bash)`; zsh `source <(nexus completion zsh)`; fish `nexus completion fish | source`.')
    .action(async (shell: 'bash' | 'zsh' | 'fish', _o: unknown, c: Command) => {
      const { bashScript, commandTree, fishScript, zshScript } = await import('../completion.ts');
      const tree = commandTree(root(c));
      process.stdout.write(shell === 'bash' ? bashScript(tree) : shell === 'zsh' ? zshScript(tree) : fishScript(tree));
    });
}

export function manCommand(): Command {
  return new Command('man')
    .description('print the nexus(1) man page (roff) generated from the command definitions; view it with `nexus man | man -l -`')
    .action(async (_o: unknown, c: Command) => {
      const { commandTree, manPage } = await import('../completion.ts');
      const { EXIT_HELP, ENV_HELP } = await import('../program.ts');
      const tree = commandTree(root(c));
      process.stdout.write(
        manPage(tree, {
          version: VERSION,
          date: new Date().toISOString().slice(0, 10),
          extra: [
            { title: 'Environment', body: ENV_HELP },
            { title: 'Exit status', body: EXIT_HELP },
          ],
        }),
      );
    });
}
