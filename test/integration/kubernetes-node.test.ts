import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import { BACKEND, CLI, REPO, type ShResult, cliEnv, scratch } from '../helpers/daemon';

// No cluster runs here, so this test plays kubelet with mount namespaces, on the manifests in
// deploy/kubernetes as they are (a change there changes what runs here):
//
// - the "node": a mount namespace whose hostPath directories live under NODE (hostPath P is NODE+P),
//   on a shared mount, as kubelet needs for mount propagation (systemd makes / shared);
// - each container: a mount namespace made from the node's, chrooted into a root of its own (the
//   host's /usr, /etc and libraries as the image, the clone at /opt/mdevfs as the image has it),
//   with its volumeMounts bound as kubelet binds them: Bidirectional = rshared, HostToContainer =
//   rslave, none = rprivate; its command and args from the manifest, $(VAR) expanded from its env
//   (configMapKeyRef read from the ConfigMap), run as the runtime runs them;
// - the agent: the nvidia-t4 pool's DaemonSet as `deploy/kubernetes/pool nvidia-t4` prints it,
//   its init container first; its readiness probe run in its namespace, as kubelet's exec probe;
// - the consumer: the example pod, started BEFORE the agent, so the tree reaches it by propagation.
//
// The clients are the real ones: mdevctl and udevadm on the consumer's /sys, a Go program given
// /host-sys-mdev, `mdevfs ctl` on the node through the control socket's hostPath.

const DEPLOY = join(REPO, 'deploy', 'kubernetes');
/** The image's PATH, with the clone's scripts standing in for its /usr/local/bin/mdevfs link. */
const IMAGE_PATH = '/opt/mdevfs/scripts:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const UUID = '5b2b3f6a-6bc2-4a36-9f0b-93fd3a43b8a1';

type Obj = Record<string, any>;

function docsOf(text: string): Obj[] {
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  return Array.isArray(docs) ? docs.map((d) => d.toJS() as Obj) : [];
}
const poolRun = spawnSync(join(DEPLOY, 'pool'), ['nvidia-t4'], { encoding: 'utf8' });
const agentPod: Obj = docsOf(poolRun.stdout)[0]!.spec.template.spec;
const base = docsOf(readFileSync(join(DEPLOY, 'mdevfs.yaml'), 'utf8'));
const configMaps = new Map<string, Obj>(base.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name, d]));
const consumerPod: Obj = docsOf(readFileSync(join(DEPLOY, 'examples', 'consumer.yaml'), 'utf8'))[0]!.spec;

/** Kubernetes' $(VAR) expansion in command, args and env: $$ is $, an unknown $(X) stays as it is. */
function expand(s: string, vars: ReadonlyMap<string, string>): string {
  return s.replace(/\$(\$|\(([A-Za-z_][A-Za-z0-9_]*)\))/g, (all, dollar: string, name?: string) =>
    dollar === '$' ? '$' : (vars.get(name!) ?? all),
  );
}

function envOf(container: Obj): Map<string, string> {
  const vars = new Map<string, string>([['PATH', IMAGE_PATH]]);
  for (const e of container.env ?? []) {
    if (e.value !== undefined) vars.set(e.name, expand(e.value, vars));
    else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const value = configMaps.get(ref.name)?.data?.[ref.key];
      if (value === undefined) throw new Error(`${container.name}: env ${e.name}: no key ${ref.key} in ConfigMap ${ref.name}`);
      vars.set(e.name, value);
    } else throw new Error(`${container.name}: env ${e.name}: not supported by this test`);
  }
  return vars;
}

const envArgs = (vars: ReadonlyMap<string, string>) => [...vars].map(([k, v]) => `${k}=${v}`);

/**
 * Builds a container's root and mounts, then runs argv in it: $1 the root, $2 the clone, $3 the
 * number of mounts, then SOURCE DEST PROPAGATION rw|ro for each, then `--` and argv.
 */
const CONTAINER_SH = String.raw`
set -e
R=$1 repo=$2 n=$3; shift 3
mount -t tmpfs -o mode=0755 tmpfs "$R"
for d in usr etc bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then cp -P "/$d" "$R/$d"
  elif [ -d "/$d" ]; then mkdir "$R/$d"; mount --rbind "/$d" "$R/$d"; mount --make-rprivate "$R/$d"; fi
done
mkdir -p "$R/dev" "$R/proc" "$R/tmp" "$R/run" "$R/var/lib" "$R/opt/mdevfs"
mount --rbind /dev "$R/dev"; mount --make-rprivate "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/tmp"
mount --bind "$repo" "$R/opt/mdevfs"; mount --make-private "$R/opt/mdevfs"
while [ "$n" -gt 0 ]; do
  src=$1 dst=$R$2 prop=$3 mode=$4; shift 4; n=$((n - 1))
  if [ -c "$src" ]; then [ -e "$dst" ] || touch "$dst"; mount --bind "$src" "$dst"
  else mkdir -p "$dst"; mount --rbind "$src" "$dst"; fi
  [ "$mode" = rw ] || mount -o remount,bind,ro "$dst"
  mount --make-r"$prop" "$dst"
done
shift
exec chroot "$R" "$@"
`;

const PROPAGATION: Record<string, string> = { Bidirectional: 'shared', HostToContainer: 'slave', None: 'private' };

let work: string;
let nodeDir: string;
let node: ChildProcess;
let roots = 0;

/** The node's path of a volume's source, made as kubelet makes it (DirectoryOrCreate, a ConfigMap's files). */
function volumeSource(pod: Obj, name: string): string {
  const v = pod.volumes.find((x: Obj) => x.name === name);
  if (v?.hostPath) {
    if (v.hostPath.type === 'CharDevice') return v.hostPath.path; // the node's devices are this machine's
    const path = join(nodeDir, v.hostPath.path);
    if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(path, { recursive: true, mode: 0o755 });
    return path;
  }
  if (v?.configMap) {
    const dir = join(work, 'configmaps', v.configMap.name);
    mkdirSync(dir, { recursive: true });
    for (const [k, data] of Object.entries(configMaps.get(v.configMap.name)!.data as Record<string, string>)) writeFileSync(join(dir, k), data);
    return dir;
  }
  throw new Error(`volume ${name}: not supported by this test`);
}

/** Starts a container of pod as the runtime would: its own mount namespace, made from the node's. */
function startContainer(pod: Obj, container: Obj, argv?: string[]): ChildProcess {
  const root = join(work, `root${roots++}`);
  mkdirSync(root);
  const mounts = (container.volumeMounts ?? []).flatMap((m: Obj) => {
    if (m.subPath) throw new Error('subPath: not supported by this test');
    return [volumeSource(pod, m.name), m.mountPath, PROPAGATION[m.mountPropagation ?? 'None']!, m.readOnly ? 'ro' : 'rw'];
  });
  const vars = envOf(container);
  const cmd = argv ?? [...container.command, ...(container.args ?? [])].map((a: string) => expand(a, vars));
  const proc = spawn(
    'nsenter',
    ['-t', String(node.pid), '-m', '--', 'unshare', '-m', '--propagation', 'unchanged', 'sh', '-c', CONTAINER_SH, 'sh', root, REPO, String(mounts.length / 4), ...mounts, '--', 'env', '-i', ...envArgs(vars), ...cmd],
    { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() },
  );
  return proc;
}

function run(proc: ChildProcess): Promise<ShResult> {
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => proc.on('exit', (code) => resolve({ stdout, stderr, code, out: stdout + stderr })));
}

/** Runs argv in a running container (kubectl exec, kubelet's exec probe): its namespace, its root, its env. */
function execIn(pid: number, container: Obj, argv: string[]): ShResult {
  const r = spawnSync('nsenter', ['-t', String(pid), '-m', '-r', '-w', '--', 'env', '-i', ...envArgs(envOf(container)), ...argv], { encoding: 'utf8', env: cliEnv() });
  return { stdout: r.stdout, stderr: r.stderr, code: r.status, out: r.stdout + r.stderr };
}

/** Runs argv on the node (its mount namespace; the host's root). */
function onNode(argv: string[]): ShResult {
  const r = spawnSync('nsenter', ['-t', String(node.pid), '-m', '--', ...argv], { encoding: 'utf8', env: cliEnv() });
  return { stdout: r.stdout, stderr: r.stderr, code: r.status, out: r.stdout + r.stderr };
}

/** The container's process has its root: its mounts are made, its command runs. */
const inRoot = (pid: number) => {
  try {
    return readlinkSync(`/proc/${pid}/root`) !== '/';
  } catch {
    return false;
  }
};

/** A process and all its descendants, from /proc. */
function tree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone meanwhile
    }
  }
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i]!) ?? []));
  return all;
}

/** SIGKILL to every process of a container, as the runtime kills one (its cgroup). */
/** SIGKILL to a process and all its descendants, the descendants first (as a runtime kills a pod's
 * cgroup at once: the direct backend's watchdog must not outlive the daemon and unmount for it). */
function killAll(pid: number): void {
  for (const p of [...tree(pid)].reverse()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

interface Agent {
  pid: number;
  exited: Promise<number | null>;
  /** SIGTERM (the pod deleted); resolves with the exit code, the log in a comment unless 0. */
  stop(): Promise<number | null>;
}

/** The agent's pod: its init containers to completion, then the daemon, until the readiness probe passes. */
async function startAgent(t: Test): Promise<Agent> {
  for (const init of agentPod.initContainers) {
    const r = await run(startContainer(agentPod, init));
    t.equal(r.code, 0, `init container ${init.name} ${r.out}`);
  }
  const spec = agentPod.containers[0];
  const vars = envOf(spec);
  // The fuse-native run gives the daemon --backend fuse-native, after the manifest's args.
  const argv = [...spec.command, ...spec.args].map((a: string) => expand(a, vars)).concat(BACKEND ? ['--backend', BACKEND] : []);
  const proc = startContainer(agentPod, spec, argv);
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.teardown(() => killAll(proc.pid!));
  const pid = proc.pid!;
  const probe = spec.readinessProbe.exec.command as string[];
  await until('the readiness probe passes', () => proc.exitCode === null && inRoot(pid) && execIn(pid, spec, probe).code === 0);
  return {
    pid,
    exited,
    async stop() {
      proc.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) t.comment(log);
      return code;
    },
  };
}

/** Polls ok (at most 600 times, 50 ms apart), as kubelet polls a probe. */
async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never: ${what}`);
}

/** FUSE mounts in a mountinfo whose mount point contains `under`. */
const fuseMounts = (mountinfo: string, under: string) =>
  mountinfo.split('\n').filter((l) => / - fuse(\.\S+)? /.test(l) && (l.split(' ')[4] ?? '').includes(under));

t.test('a node of the nvidia-t4 pool: the agent serves the node, a consumer pod uses the tree', async (t) => {
  t.equal(poolRun.status, 0, 'deploy/kubernetes/pool nvidia-t4 prints the DaemonSet');
  work = scratch('mdevfs-k8s-');
  nodeDir = join(work, 'node');
  mkdirSync(nodeDir);
  node = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$1" && mount --make-rshared "$1" && echo up && exec cat >/dev/null', 'sh', nodeDir], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => node.stdin!.end());
  await new Promise<void>((resolve, reject) => {
    node.stdout!.once('data', () => resolve());
    node.once('exit', () => reject(new Error('the node namespace did not start')));
  });

  const go = join(work, 'go');
  const build = spawnSync('go', ['build', '-o', join(go, 'bin', 'mdev-types'), '.'], {
    cwd: join(REPO, 'test', 'fixtures', 'mdev-types'),
    encoding: 'utf8',
    env: { ...process.env, GOFLAGS: '-mod=mod', GOPROXY: 'off', GOSUMDB: 'off', GOTOOLCHAIN: 'local', GOCACHE: join(go, 'cache'), GOPATH: join(go, 'path'), CGO_ENABLED: '0' },
  });
  t.equal(build.status, 0, `the Go client builds offline ${build.stderr}`);

  // The consumer first. Its image has the Go program at /opt/consumer/bin (here: a read-only
  // volume of the node's, added to the example pod).
  mkdirSync(join(nodeDir, 'go-bin'));
  writeFileSync(join(nodeDir, 'go-bin', 'mdev-types'), readFileSync(join(go, 'bin', 'mdev-types')), { mode: 0o755 });
  const client = consumerPod.containers[0];
  const consumer = startContainer(
    { ...consumerPod, volumes: [...consumerPod.volumes, { name: 'go', hostPath: { path: '/go-bin' } }] },
    { ...client, volumeMounts: [...client.volumeMounts, { name: 'go', mountPath: '/opt/consumer/bin', readOnly: true }] },
  );
  t.teardown(() => consumer.kill('SIGKILL'));
  const cpid = consumer.pid!;
  await until('the consumer runs', () => inRoot(cpid));
  const inConsumer = (...argv: string[]) => execIn(cpid, client, argv);
  t.equal(inConsumer('ls', '-A', '/sys').stdout, '', 'before the agent, the consumer\'s /sys is the empty hostPath directory');

  const spec = agentPod.containers[0];
  const probe = spec.readinessProbe.exec.command as string[];
  const agent = await startAgent(t);
  const apid = agent.pid;
  t.pass(`readiness: ${probe.join(' ')} exits 0 in the agent`);

  // The consumer sees the tree where its software looks: /sys (mdevctl, libudev) and /host-sys-mdev.
  t.equal(inConsumer('ls', '/host-sys-mdev/class/mdev_bus').stdout, '0000:00:04.0\n', 'the T4 is an mdev parent in the consumer');
  const types = inConsumer('mdevctl', 'types');
  t.equal(types.code, 0, 'mdevctl types runs in the consumer');
  t.match(types.stdout, /^ {2}nvidia-230\n {4}Available instances: 16\n {4}Device API: vfio-pci\n {4}Name: GRID T4-1Q$/m, 'mdevctl sees the T4\'s types on /sys');
  const goTypes = inConsumer('/opt/consumer/bin/mdev-types', '/host-sys-mdev');
  t.equal(goTypes.code, 0, 'the Go client reads /host-sys-mdev');
  t.match(goTypes.stdout, /^0000:00:04\.0 nvidia-230 16 vfio-pci GRID_T4-1Q$/m, 'the Go client lists nvidia-230 with 16 instances');
  t.equal(inConsumer('/opt/consumer/bin/mdev-types', '/sys').stdout, goTypes.stdout, 'and reads the same at /sys');
  t.equal(inConsumer('/opt/consumer/bin/mdev-types', '-devices', '/sys').stdout, '', 'no mdev yet');

  // The node: `mdevfs ctl` through the control socket in the hostPath /run/mdevfs.
  const control = spec.args[spec.args.indexOf('--control') + 1] as string;
  const nodeTree = join(nodeDir, spec.args[1]);
  const ctl = (...args: string[]) => onNode([process.execPath, CLI, 'ctl', nodeTree, ...args, '--control', join(nodeDir, control)]);
  const parents = ctl('parents');
  t.equal(parents.code, 0, `ctl parents on the node ${parents.stderr}`);
  t.match(parents.stdout, /0000:00:04\.0/, 'ctl parents lists the T4');
  const profileFile = join(work, 'lab-gpu.json');
  writeFileSync(profileFile, configMaps.get('mdevfs-profiles')!.data['lab-gpu.json']);
  t.equal(ctl('add-parent', profileFile).code, 0, 'ctl add-parent hot-plugs the lab-gpu parent');
  const added = inConsumer('mdevctl', 'types').stdout;
  t.match(added, /^gpu0$/m, 'the consumer sees the parent added through the control socket');
  t.match(added, /^ {2}gpu-small\n {4}Available instances: 8$/m, 'with its types');
  t.equal(ctl('remove-parent', 'gpu0').code, 0, 'ctl remove-parent pulls it again');
  t.notMatch(inConsumer('mdevctl', 'types').stdout, /^gpu0$/m, 'and the consumer no longer sees it');

  // A create written through the agent's tree (kubectl exec into the agent).
  const create = execIn(apid, spec, ['sh', '-c', `echo ${UUID} > /var/lib/mdevfs/sys/class/mdev_bus/0000:00:04.0/mdev_supported_types/nvidia-230/create`]);
  t.equal(create.code, 0, `create through the agent's tree ${create.stderr}`);
  t.match(inConsumer('mdevctl', 'list').stdout, new RegExp(`^${UUID} 0000:00:04\\.0 nvidia-230 manual$`, 'm'), 'mdevctl list in the consumer shows the new vGPU');
  const info = inConsumer('udevadm', 'info', `/sys/bus/mdev/devices/${UUID}`);
  t.equal(info.code, 0, `udevadm info on the vGPU ${info.stderr}`);
  t.match(info.stdout, new RegExp(`^P: /devices/pci0000:00/0000:00:04\\.0/${UUID}$`, 'm'), 'udevadm resolves the device path');
  t.match(info.stdout, /^E: SUBSYSTEM=mdev$/m, 'as an mdev');
  t.match(inConsumer('/opt/consumer/bin/mdev-types', '/host-sys-mdev').stdout, /^0000:00:04\.0 nvidia-230 15 /m, 'the Go client sees one instance fewer');
  t.match(
    inConsumer('/opt/consumer/bin/mdev-types', '-devices', '/sys').stdout,
    new RegExp(`^${UUID} 0000:00:04\\.0 GRID_T4-1Q \\d+ -?\\d+\\n$`),
    'and finds the vGPU as KubeVirt\'s device plugin does: parent, type name, IOMMU group, NUMA node',
  );

  const nodeInfo = () => readFileSync(`/proc/${node.pid}/mountinfo`, 'utf8');
  t.equal(fuseMounts(nodeInfo(), nodeDir).length, 1, 'the node has the tree mounted at its hostPath');
  t.same(fuseMounts(readFileSync('/proc/self/mountinfo', 'utf8'), work), [], 'nothing of the node reaches this machine\'s own namespace');

  const consumerFuse = () => fuseMounts(inConsumer('cat', '/proc/self/mountinfo').stdout, '/').map((l) => l.split(' ')[4]).sort();
  t.same(consumerFuse(), ['/host-sys-mdev', '/sys'], 'the consumer has the tree at /sys and /host-sys-mdev');

  // The agent stops (the pod is deleted: SIGTERM).
  t.equal(await agent.stop(), 0, 'the daemon exits 0 on SIGTERM');
  const gone = async (when: string) => {
    t.equal(inConsumer('ls', '-A', '/sys').stdout, '', `${when}: the consumer's /sys is the empty hostPath directory again`);
    t.equal(inConsumer('ls', '-A', '/host-sys-mdev').stdout, '', `${when}: and so is /host-sys-mdev`);
    t.same(consumerFuse(), [], `${when}: no FUSE mount left in the consumer`);
    t.same(fuseMounts(nodeInfo(), nodeDir), [], `${when}: none on the node`);
    t.ok(existsSync(nodeTree), `${when}: the node's tree directory stays, for the next agent`);
  };
  await gone('SIGTERM');
  const after = await run(startContainer(agentPod, spec, probe));
  t.not(after.code, 0, `the readiness probe fails once the agent is gone: ${after.out.trim()}`);
  t.not(inConsumer('/opt/consumer/bin/mdev-types', '/host-sys-mdev').code, 0, 'the Go client finds no mdev parent');

  // A new agent (a rolling update): the consumer, still running, gets the tree again.
  const second = await startAgent(t);
  t.match(inConsumer('mdevctl', 'types').stdout, /^ {2}nvidia-230$/m, 'a new agent: the running consumer sees the tree again');
  t.notMatch(inConsumer('mdevctl', 'list').stdout, UUID, 'a fresh host: the old agent\'s vGPU is gone');
  // The agent's container is killed (OOM, node pressure): every process in it, at once.
  killAll(second.pid);
  await second.exited;
  t.match(inConsumer('ls', '/sys').stderr, /Transport endpoint is not connected/, 'a killed agent leaves a dead mount (ENOTCONN), as any FUSE daemon does');
  const third = await startAgent(t);
  t.match(inConsumer('mdevctl', 'types').stdout, /^ {2}nvidia-230$/m, 'the next agent recovers the dead mount, and the consumer sees its tree');
  t.equal(await third.stop(), 0, 'that agent exits 0 on SIGTERM');
  await gone('after a crash and a restart');
});
