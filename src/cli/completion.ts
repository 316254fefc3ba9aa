// Shell completion scripts (bash, zsh, fish) and the man page, generated from the program's own
// command tree (commander): the commands, subcommands, arguments and options a user can type are
// exactly those `nexus --help` lists, so neither can drift from the other.
import type { Command, Option } from 'commander';

export interface Node {
  /** Command path without the program name: '' for the root, 'imvu create' for a subcommand. */
  path: string;
  name: string;
  description: string;
  usage: string;
  subcommands: Node[];
  options: { flags: string; long?: string; short?: string; description: string; takesValue: boolean; required: boolean; choices?: readonly string[] }[];
}

function optionsOf(cmd: Command): Node['options'] {
  const opts = (cmd.options as readonly Option[]).map((o) => ({
    flags: o.flags,
    ...(o.long ? { long: o.long } : {}),
    ...(o.short ? { short: o.short } : {}),
    description: o.description,
    takesValue: o.required || o.optional,
    required: o.mandatory,
    ...(o.argChoices ? { choices: o.argChoices } : {}),
  }));
  opts.push({ flags: '-h, --help', long: '--help', short: '-h', description: 'display help for command', takesValue: false, required: false });
  return opts;
}

/** The command tree as plain data (hidden commands left out). */
export function commandTree(cmd: Command, prefix = ''): Node {
  const path = prefix;
  const subs = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  return {
    path,
    name: cmd.name(),
    description: cmd.description(),
    usage: cmd.usage(),
    subcommands: subs.map((c) => commandTree(c, prefix ? `${prefix} ${c.name()}` : c.name())),
    options: optionsOf(cmd),
  };
}

function all(n: Node): Node[] {
  return [n, ...n.subcommands.flatMap(all)];
}

const words = (n: Node) => [...n.subcommands.map((s) => s.name), ...n.options.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x))];
/** Single-quoted for a shell (bash, zsh, fish): ' becomes '\''. */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export function bashScript(root: Node, prog = 'nexus'): string {
  const nodes = all(root);
  const fn = `_${prog.replace(/[^A-Za-z0-9_]/g, '_')}_complete`;
  const paths = nodes.filter((n) => n.path).map((n) => `    ${sq(n.path)}) cmdpath=$next ;;`);
  const cases = nodes.map((n) => `    ${sq(n.path)}) opts=${sq(words(n).join(' '))} ;;`);
  return `# bash completion for ${prog} (generated from its command definitions: \`${prog} completion bash\`)
# Load it in the current shell:  source <(${prog} completion bash)
${fn}() {
  local cur cmdpath next w i opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  cmdpath=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    next="\${cmdpath:+$cmdpath }$w"
    case "$next" in
${paths.join('\n')}
    esac
  done
  case "$cmdpath" in
${cases.join('\n')}
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F ${fn} ${prog}
`;
}

export function zshScript(root: Node, prog = 'nexus'): string {
  const nodes = all(root);
  const desc = (s: string) => s.replace(/:/g, '\\:');
  const paths = nodes.filter((n) => n.path).map((n) => `      (${sq(n.path)}) cmdpath=$next ;;`);
  const cases = nodes.map(
    (n) =>
      `    (${sq(n.path)})\n      subs=(${n.subcommands.map((s) => sq(`${s.name}:${desc(s.description)}`)).join(' ')})\n      opts=(${n.options.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x)).map(sq).join(' ')}) ;;`,
  );
  return `#compdef ${prog}
# zsh completion for ${prog} (generated from its command definitions: \`${prog} completion zsh\`)
# Load it:  source <(${prog} completion zsh)   or save it as _${prog} in a directory of $fpath
_${prog}() {
  local cmdpath="" next w i
  local -a subs opts
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    [[ $w == -* ]] && continue
    next="\${cmdpath:+$cmdpath }$w"
    case "$next" in
${paths.join('\n')}
    esac
  done
  case "$cmdpath" in
${cases.join('\n')}
  esac
  if [[ \${words[CURRENT]} == -* ]]; then
    compadd -- $opts
  else
    _describe -t commands '${prog} command' subs
  fi
}
compdef _${prog} ${prog}
`;
}

export function fishScript(root: Node, prog = 'nexus'): string {
  const nodes = all(root);
  const known = nodes.filter((n) => n.path).map((n) => n.path);
  const lines = [
    `# fish completion for ${prog} (generated from its command definitions: \`${prog} completion fish\`)`,
    `# Load it:  ${prog} completion fish | source   or save it as ~/.config/fish/completions/${prog}.fish`,
    `function __${prog}_path`,
    `    set -l cmdpath ''`,
    `    set -l known ${known.map(sq).join(' ')}`,
    `    for w in (commandline -opc)[2..-1]`,
    `        string match -q -- '-*' $w; and continue`,
    `        set -l next (string trim -- "$cmdpath $w")`,
    `        contains -- $next $known; and set cmdpath $next`,
    `    end`,
    `    echo $cmdpath`,
    `end`,
    `complete -c ${prog} -f`,
  ];
  for (const n of nodes) {
    const cond = `-n ${sq(`test (__${prog}_path) = ${sq(n.path)}`)}`;
    for (const s of n.subcommands) lines.push(`complete -c ${prog} ${cond} -a ${sq(s.name)} -d ${sq(s.description)}`);
    for (const o of n.options) {
      const flag = [o.long ? `-l ${o.long.replace(/^--/, '')}` : '', o.short ? `-s ${o.short.replace(/^-/, '')}` : ''].filter(Boolean).join(' ');
      if (!flag) continue;
      lines.push(`complete -c ${prog} ${cond} ${flag}${o.takesValue ? ' -r' : ''}${o.choices ? ` -a ${sq(o.choices.join(' '))}` : ''} -d ${sq(o.description)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** roff text: backslashes escaped, a line starting with . or ' protected, hyphens as \- in flags. */
function roff(s: string): string {
  return s
    .replace(/\\/g, '\\e')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}
const flag = (s: string) => roff(s).replace(/-/g, '\\-');

/** The man page (section 1), from the same tree; `extra` adds sections (environment, exit status) from the program's help text. */
export function manPage(root: Node, opts: { version: string; date: string; extra?: { title: string; body: string }[] }): string {
  const out: string[] = [
    `.TH NEXUS 1 "${opts.date}" "nexus ${opts.version}" "User Commands"`,
    '.SH NAME',
    `${root.name} \\- ${roff(root.description)}`,
    '.SH SYNOPSIS',
    `.B ${root.name}`,
    '[\\fIglobal options\\fR] \\fIcommand\\fR [\\fIsubcommand\\fR] [\\fIarguments\\fR] [\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    roff(root.description) + '.',
    'Every command below has \\fB\\-\\-help\\fR.',
    '.SH GLOBAL OPTIONS',
  ];
  const optionLines = (n: Node) => n.options.flatMap((o) => ['.TP', `.B ${flag(o.flags)}`, `${roff(o.description)}${o.required ? ' (required)' : ''}${o.choices ? ` One of: ${roff(o.choices.join(', '))}.` : ''}`]);
  out.push(...optionLines(root), '.SH COMMANDS');
  for (const n of all(root).slice(1)) {
    if (n.subcommands.length) {
      out.push('.SS ' + `"${root.name} ${n.path}"`, roff(n.description) + '.', `Subcommands: ${n.subcommands.map((s) => `\\fB${s.name}\\fR`).join(', ')}.`);
      continue;
    }
    out.push('.SS ' + `"${root.name} ${n.path}"`, `.B ${root.name} ${n.path}`, flag(n.usage).replace(/^\[options\] ?/, '[\\fIoptions\\fR] '), '.PP', roff(n.description) + '.');
    const own = n.options.filter((o) => o.long !== '--help');
    if (own.length) out.push('.RS', ...optionLines({ ...n, options: own }), '.RE');
  }
  for (const s of opts.extra ?? []) out.push(`.SH ${s.title.toUpperCase()}`, roff(s.body));
  out.push('.SH SEE ALSO', `\\fB${root.name} completion\\fR(1) prints completion scripts for bash, zsh and fish generated from the same definitions.`);
  return out.join('\n') + '\n';
}
