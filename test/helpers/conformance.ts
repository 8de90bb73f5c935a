import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, REPO, backendArgs, cliEnv } from './daemon';

export const CONFORMANCE = join(REPO, 'test', 'conformance');

/**
 * Runs a fixture scenario the way the reference kernel ran it (bash, cwd /, a clean C-locale
 * environment, stdout and stderr merged) but with a fresh mdevfs tree over /sys.
 */
export function runScenario(name: string, opts: { abi?: string; profile?: string } = {}): { output: string; status: number | null } {
  const script = join(CONFORMANCE, 'scenarios', `${name}.sh`);
  const env = ['env', '-i', `PATH=${process.env.PATH}`, 'HOME=/root', 'LC_ALL=C', 'TERM=dumb', 'USER=root', 'LOGNAME=root'];
  const args = [CLI, 'exec', ...backendArgs, ...(opts.abi ? ['--abi', opts.abi] : []), ...(opts.profile ? ['--profile', opts.profile] : []), '--', ...env, 'bash', '-c', 'exec bash "$0" 2>&1 </dev/null', script];
  const r = spawnSync(process.execPath, args, { cwd: '/', encoding: 'utf8', timeout: 120_000, env: cliEnv() });
  // bash names the script in its messages; the oracle ran it as /scenario.sh.
  const output = r.stdout.split(`${script}: `).join('/scenario.sh: ');
  return { output, status: r.status };
}

export function expected(name: string): string {
  return readFileSync(join(CONFORMANCE, 'expected', `${name}.txt`), 'utf8');
}
