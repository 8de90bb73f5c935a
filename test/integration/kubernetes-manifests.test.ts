// runs once, on the default backend: it validates YAML, mounts nothing
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Pod } from 'kubernetes-models/v1';
import { BUILTIN_PROFILES, profileProblems } from '../../src/drivers/profile';
import { REPO } from '../helpers/daemon';

// Every manifest in deploy/kubernetes, and every DaemonSet `deploy/kubernetes/pool` prints, checked
// offline against the Kubernetes API's schemas as the kubernetes-models package carries them (its
// validate(): types, enums, required fields) and against its TypeScript types for unknown fields
// (the JSON schemas allow any field; an API server with strict field validation, kubectl's default
// since 1.27, refuses one, and a misspelt `mountPropagation` would silently hide the tree), then
// against each other: names, keys and paths that must agree across files.

const DEPLOY = join(REPO, 'deploy', 'kubernetes');
const POOL = join(DEPLOY, 'pool');

interface Doc {
  source: string;
  obj: Record<string, unknown>;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

function parse(source: string, text: string): Doc[] {
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  if (!Array.isArray(docs)) throw new Error(`${source}: not YAML documents`);
  return docs.map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${source}#${i}: ${d.errors.map((e) => e.message).join('; ')}`);
    return { source: `${source}#${i}`, obj: d.toJS() as Record<string, unknown> };
  });
}

function render(pool: string): string {
  const r = spawnSync(POOL, [pool], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pool ${pool}: ${r.stderr}`);
  return r.stdout;
}

const MODELS: Record<string, { validate(obj: Record<string, unknown>): void; type: string; module: string }> = {
  'v1/Namespace': { validate: (o) => new Namespace(o as never).validate(), type: 'INamespace', module: 'kubernetes-models/v1/Namespace' },
  'v1/ConfigMap': { validate: (o) => new ConfigMap(o as never).validate(), type: 'IConfigMap', module: 'kubernetes-models/v1/ConfigMap' },
  'v1/Pod': { validate: (o) => new Pod(o as never).validate(), type: 'IPod', module: 'kubernetes-models/v1/Pod' },
  'apps/v1/DaemonSet': { validate: (o) => new DaemonSet(o as never).validate(), type: 'IDaemonSet', module: 'kubernetes-models/apps/v1/DaemonSet' },
};

const modelOf = (d: Doc) => MODELS[`${d.obj.apiVersion}/${d.obj.kind}`];

/**
 * Each document as an object literal typed with its kind's interface, compiled by TypeScript:
 * an excess property (a field the API does not have) or a wrong type is a diagnostic. Returns the
 * diagnostics as text, one a line, naming the document.
 */
function typeCheck(docs: readonly Doc[]): string[] {
  const file = join(REPO, 'test', 'integration', '__kubernetes-manifests.ts');
  const lines = docs.map((d, i) => {
    const m = modelOf(d)!;
    return `import type { ${m.type} as T${i} } from '${m.module}';\nexport const doc${i}: T${i} = ${JSON.stringify(d.obj)};`;
  });
  const text = lines.join('\n');
  const options: ts.CompilerOptions = { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10, types: [] };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang) => (name === file ? ts.createSourceFile(name, text, lang) : getSourceFile(name, lang));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diag) => {
    const msg = ts.flattenDiagnosticMessageText(diag.messageText, ' ');
    if (diag.file?.fileName !== file || diag.start === undefined) return msg;
    const line = diag.file.getLineAndCharacterOfPosition(diag.start).line;
    const doc = docs[Math.floor(line / 2)];
    return `${doc?.source}: ${msg}`;
  });
}

const files = yamlFiles(DEPLOY);
const docs: Doc[] = files.flatMap((f) => parse(relative(REPO, f), readFileSync(f, 'utf8')));
const pools = ['samples', 'nvidia-t4', 'lab-gpu'];
const rendered: Doc[] = pools.flatMap((p) => parse(`pool ${p}`, render(p)));

t.test('every manifest is YAML of a known kind and passes the Kubernetes schemas', async (t) => {
  t.ok(files.length >= 3, `manifests found: ${files.map((f) => relative(REPO, f)).join(', ')}`);
  for (const d of [...docs, ...rendered]) {
    const model = modelOf(d);
    t.ok(model, `${d.source}: ${d.obj.apiVersion}/${d.obj.kind} is a kind this test knows`);
    if (!model) continue;
    t.doesNotThrow(() => model.validate(d.obj), `${d.source}: ${d.obj.kind} ${(d.obj.metadata as { name?: string })?.name} validates`);
  }
  t.same(typeCheck([...docs, ...rendered]), [], 'no unknown field, no wrong type (TypeScript, the API types)');
});

t.test('the checks can fail: a wrong enum, a wrong type and a misspelt field are found', async (t) => {
  const ds = rendered.find((d) => d.obj.kind === 'DaemonSet')!;
  const text = JSON.stringify(ds.obj);
  const variant = (from: string, to: string): Doc => {
    t.ok(text.includes(from), `the DaemonSet has ${from}`);
    return { source: 'variant', obj: JSON.parse(text.replace(from, to)) };
  };
  const badEnum = variant('"mountPropagation":"Bidirectional"', '"mountPropagation":"Shared"');
  t.throws(() => modelOf(badEnum)!.validate(badEnum.obj), /mountPropagation/, 'mountPropagation: Shared is refused');
  const badType = variant('"privileged":true', '"privileged":"yes"');
  t.throws(() => modelOf(badType)!.validate(badType.obj), /privileged/, 'privileged: "yes" is refused');
  const typo = variant('"mountPropagation":"Bidirectional"', '"mountPropagaton":"Bidirectional"');
  t.doesNotThrow(() => modelOf(typo)!.validate(typo.obj), 'the JSON schemas alone let a misspelt field through');
  t.match(typeCheck([typo]).join('\n'), /mountPropagaton/, 'the type check names the misspelt field');
});

/** The one document of a kind and name (throws unless exactly one). */
function only(all: readonly Doc[], kind: string, name?: string): Record<string, any> {
  const found = all.filter((d) => d.obj.kind === kind && (name === undefined || (d.obj.metadata as { name?: string }).name === name));
  if (found.length !== 1) throw new Error(`${found.length} ${kind} ${name ?? ''} documents`);
  return found[0]!.obj;
}

t.test('the files agree: pools, profiles, paths, volumes', async (t) => {
  const profiles = only(docs, 'ConfigMap', 'mdevfs-profiles');
  const data = profiles.data as Record<string, string>;
  const mountedAt = '/etc/mdevfs/profiles/';
  for (const [key, value] of Object.entries(data)) {
    if (key.endsWith('.json')) {
      t.same(profileProblems(JSON.parse(value)), [], `${key} is a valid mdevfs profile`);
      continue;
    }
    if (value.startsWith('/')) {
      t.ok(value.startsWith(mountedAt) && data[value.slice(mountedAt.length)] !== undefined, `${key}: ${value} is a key of the map, mounted as a file`);
    } else {
      t.ok(BUILTIN_PROFILES[value], `${key}: ${value} is a built-in profile`);
    }
  }
  for (const pool of pools) {
    t.ok(data[pool], `the pool ${pool} has a profile`);
    const ds = only(rendered.filter((d) => d.source.startsWith(`pool ${pool}#`)), 'DaemonSet');
    t.equal(ds.metadata.name, `mdevfs-${pool}`, `${pool}: the DaemonSet's name`);
    t.equal(ds.metadata.namespace, profiles.metadata.namespace, `${pool}: in the ConfigMap's namespace`);
    const spec = ds.spec.template.spec;
    t.equal(spec.nodeSelector['mdevfs.io/profile'], pool, `${pool}: runs on the nodes labelled mdevfs.io/profile=${pool}`);
    t.same(ds.spec.selector.matchLabels, Object.fromEntries(Object.keys(ds.spec.selector.matchLabels).map((k) => [k, ds.spec.template.metadata.labels[k]])), `${pool}: the selector matches the pods' labels`);
    const env = spec.containers[0].env.find((e: { name: string }) => e.name === 'MDEVFS_PROFILE');
    t.same(env.valueFrom.configMapKeyRef, { name: 'mdevfs-profiles', key: pool }, `${pool}: the profile is the map's key ${pool}`);
  }
  const sample = only(docs, 'DaemonSet');
  const agent = sample.spec.template.spec.containers[0];
  const [verb, tree] = agent.args as string[];
  t.equal(verb, 'mount', 'the agent runs mdevfs mount');
  const control = agent.args[agent.args.indexOf('--control') + 1];
  t.same(agent.readinessProbe.exec.command, ['mdevfs', 'wait', tree, '--control', control, '--timeout', '3'], 'readiness asks the daemon serving the tree, on its socket');
  t.equal(agent.securityContext.privileged, true, 'privileged');
  t.ok(agent.resources.requests && agent.resources.limits, 'requests and limits');
  const volumes = new Map<string, any>(sample.spec.template.spec.volumes.map((v: { name: string }) => [v.name, v]));
  const mountOf = (path: string) => agent.volumeMounts.find((m: { mountPath: string }) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
  const treeMount = mountOf(tree);
  t.equal(treeMount.mountPropagation, 'Bidirectional', 'the tree is under a Bidirectional mount');
  t.ok(volumes.get(treeMount.name).hostPath, 'of a hostPath');
  const nodeTree = volumes.get(treeMount.name).hostPath.path + tree.slice(treeMount.mountPath.length);
  t.ok(volumes.get(mountOf(control).name).hostPath, 'the control socket is in a hostPath directory');
  t.equal(volumes.get(mountOf('/dev/fuse').name).hostPath.type, 'CharDevice', '/dev/fuse is the node\'s');
  for (const c of [...sample.spec.template.spec.initContainers, agent])
    for (const m of c.volumeMounts) t.ok(volumes.has(m.name), `${c.name}: the volume ${m.name} exists`);

  const consumer = only(docs, 'Pod', 'mdevfs-consumer');
  const cvol = consumer.spec.volumes.find((v: { hostPath?: { path: string } }) => v.hostPath?.path === nodeTree);
  t.ok(cvol, `the consumer mounts the node's tree (${nodeTree})`);
  const cmounts = consumer.spec.containers[0].volumeMounts.filter((m: { name: string }) => m.name === cvol.name);
  t.same(cmounts.map((m: { mountPath: string; mountPropagation: string }) => [m.mountPath, m.mountPropagation]), [
    ['/sys', 'HostToContainer'],
    ['/host-sys-mdev', 'HostToContainer'],
  ], 'at /sys and /host-sys-mdev, with HostToContainer propagation');
});

t.test('the image (Dockerfile) has what the manifests run', async (t) => {
  const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  const ds = only(docs, 'DaemonSet').spec.template.spec;
  t.equal(ds.containers[0].command[0], 'mdevfs', 'the agent runs mdevfs by name');
  t.match(dockerfile, /^RUN ln -s \/opt\/mdevfs\/scripts\/mdevfs \/usr\/local\/bin\/mdevfs$/m, 'which the image puts on PATH (the node test stands the clone in for /opt/mdevfs)');
  const installed = /apt-get install[^\n]*(?:\\\n[^\n]*)*/g;
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  t.match(runtime.match(installed)?.join(' ') ?? '', /\bmdevctl\b/, 'the image has mdevctl, which the consumer example runs');
  const images = [...docs, ...rendered].flatMap((d) => {
    const spec = d.obj.kind === 'Pod' ? (d.obj.spec as Record<string, any>) : d.obj.kind === 'DaemonSet' ? (d.obj.spec as Record<string, any>).template.spec : undefined;
    return spec ? [...(spec.initContainers ?? []), ...spec.containers].map((c: { image: string; imagePullPolicy: string }) => `${c.image} ${c.imagePullPolicy}`) : [];
  });
  t.same([...new Set(images)], ['mdevfs:latest IfNotPresent'], 'every container runs the image loaded into the nodes, never pulled');
});

t.test('pool refuses a name that is no DaemonSet name, with a usage error', async (t) => {
  for (const bad of [[], ['Upper'], ['a_b'], ['-x'], ['x-'], ['a'.repeat(57)], ['a', 'b'], ['x/y']]) {
    const r = spawnSync(POOL, bad, { encoding: 'utf8' });
    t.equal(r.status, 2, `pool ${bad.join(' ')}: exit 2`);
    t.match(r.stderr, /^usage: /, 'says how to use it');
    t.equal(r.stdout, '', 'prints no manifest');
  }
});
