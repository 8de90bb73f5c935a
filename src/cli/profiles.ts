/**
 * `mdevfs profiles`: the built-in profiles, one a line with the host each emulates, and
 * `mdevfs profiles show NAME [--gpus N]`: one of them as the JSON profile `--profile FILE` takes,
 * to copy and change. Built-ins that model one GPU take `--gpus N` for a host with N of them.
 */
import { BUILTINS, MAX_GPUS, WITH_GPUS } from '../drivers/builtin/index';
import { UsageError } from './args';

export async function profilesCommand(args: readonly string[], options: ReadonlyMap<string, string>): Promise<number> {
  const [verb, name] = args;
  if (verb === undefined) {
    if (options.has('gpus')) throw new UsageError('--gpus goes with a profile: mdevfs profiles show NAME --gpus N');
    const width = Math.max(...Object.keys(BUILTINS).map((n) => n.length));
    process.stdout.write(Object.entries(BUILTINS).map(([n, p]) => `${n.padEnd(width)}  ${p.description ?? ''}\n`).join(''));
    return 0;
  }
  if (verb !== 'show' || name === undefined) throw new UsageError(`mdevfs profiles takes nothing or "show NAME", not "${args.join(' ')}"`);
  const builtin = BUILTINS[name];
  if (!builtin) throw new UsageError(`no built-in profile "${name}" (${Object.keys(BUILTINS).join(', ')})`);
  const gpus = options.get('gpus');
  let profile = builtin;
  if (gpus !== undefined) {
    const make = WITH_GPUS[name];
    if (!make) throw new UsageError(`--gpus is for the built-ins that model one GPU (${Object.keys(WITH_GPUS).join(', ')}), not ${name}`);
    if (!/^[1-9]\d*$/.test(gpus) || Number(gpus) > MAX_GPUS) throw new UsageError(`--gpus must be a number from 1 to ${MAX_GPUS}, not "${gpus}"`);
    profile = make(Number(gpus));
  }
  process.stdout.write(`${JSON.stringify(profile, null, 2)}\n`);
  return 0;
}
