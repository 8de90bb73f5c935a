/** A small option parser: --name value, --name=value, boolean flags, positionals, and "--". */
export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
  rest: string[];
}

export function parseArgs(argv: readonly string[], valued: ReadonlySet<string>): ParsedArgs {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  let rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      if (eq >= 0) options.set(name, a.slice(eq + 1));
      else if (valued.has(name)) {
        const v = argv[++i];
        if (v === undefined) throw new Error(`--${name} needs a value`);
        options.set(name, v);
      } else options.set(name, true);
    } else if (a === '-h') options.set('help', true);
    else positionals.push(a);
  }
  return { positionals, options, rest };
}
