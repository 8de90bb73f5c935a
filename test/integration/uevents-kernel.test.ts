import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { SAMPLES } from '../../src/drivers/samples';
import { CLI, REPO, cliEnv, scratch, startDaemon } from '../helpers/daemon';

// The uevents of the real kernel (test/events/NAME.txt, recorded with test/events/NAME.sh on the
// reference kernel, see test/events/README.md) against mdevfs's: the scenario's steps run
// unchanged with /sys being the mount; `modprobe mtty` / `rmmod mtty` become ctl add-parent /
// remove-parent of the mtty sample, and each step prints the events mdevfs sent in the
// fixture's format (mdevfs events up to a marker event).

const EVENTS = join(REPO, 'test', 'events');
/** Each test/events/NAME.sh with its transcript NAME.txt. */
const SCENARIOS = readdirSync(EVENTS).filter((f) => f.endsWith('.sh')).map((f) => f.slice(0, -3)).sort();

interface Step {
  name: string;
  /** What the step's commands printed (errors). */
  output: string[];
  events: string[][];
}

/** The transcript as steps; an event is its KEY=VALUE lines. */
function parse(text: string): Step[] {
  const steps: Step[] = [];
  let output: string[] = [];
  let ev: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('## ')) {
      steps.push({ name: line.slice(3), output, events: [] });
      output = [];
      ev = undefined;
    } else if (line === '--' && steps.length > 0) {
      steps[steps.length - 1]!.events.push((ev = []));
    } else if (ev && /^[A-Z][A-Za-z0-9_]*=/.test(line)) ev.push(line);
    else if (line !== '') {
      ev = undefined;
      output.push(line);
    }
  }
  return steps;
}

/**
 * What is compared: HOME and PATH are added by the kernel for the uevent helper only (after
 * SEQNUM; the netlink message has neither); SEQNUM values differ (checked to increase instead).
 * Everything else, the vfio group devices' events (SUBSYSTEM=vfio, MAJOR, MINOR, DEVNAME) too.
 */
function comparable(steps: Step[]): Step[] {
  return steps.map((s) => ({
    ...s,
    events: s.events.map((e) => e.filter((kv) => !/^(HOME|PATH|SEQNUM)=/.test(kv))),
  }));
}

function seqnums(steps: Step[]): number[] {
  return steps.flatMap((s) => s.events.map((e) => Number(e.find((kv) => kv.startsWith('SEQNUM='))?.slice(7))));
}

for (const name of SCENARIOS) {
  t.test(`${name}: mdevfs sends the events the 6.1 kernel sent, step by step`, async (t) => {
    const kernel = parse(readFileSync(join(EVENTS, `${name}.txt`), 'utf8'));
    const work = scratch('mdevfs-uevents-');
    const mtty = SAMPLES.parents.find((p) => p.name === 'mtty')!;
    const mttyFile = join(work, 'mtty.json');
    writeFileSync(mttyFile, JSON.stringify(mtty));
    const d = await startDaemon({ profile: { parents: SAMPLES.parents.filter((p) => p !== mtty) } });
    t.teardown(() => d.stop());

    const scenario = readFileSync(join(EVENTS, `${name}.sh`), 'utf8');
    const steps = scenario.slice(scenario.indexOf('# ---- steps'));
    const node = `${process.execPath} ${CLI}`;
    // step: a marker event (a synthetic change of bus/mdev with a UUID of its own) ends what the
    // step sent; `mdevfs events` prints everything up to it, as JSON lines.
    const prelude = `
      SEEN=0; MARK=0
      modprobe() { ${node} ctl ${d.dir} add-parent ${mttyFile}; }
      rmmod() { ${node} ctl ${d.dir} remove-parent "$1"; }
      step() {
        MARK=$((MARK + 1))
        echo "change $(printf '00000000-0000-0000-0000-%012d' $MARK)" > /sys/bus/mdev/uevent
        echo "## $1"
        ${node} events ${d.dir} --since $SEEN --until change:mdev --timeout 10 > ${work}/step.json || echo "(no marker)"
        cat ${work}/step.json
        SEEN=$(tail -n 1 ${work}/step.json | sed -E 's/.*"SEQNUM":"([0-9]+)".*/\\1/')
      }
    `;
    const script = join(work, 'steps.sh');
    writeFileSync(script, prelude + steps);
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', '-c', 'mount --bind "$1" /sys && exec bash "$2" 2>&1', 'sh', d.dir, script], {
      encoding: 'utf8',
      timeout: 120000,
      env: cliEnv({ LC_ALL: 'C' }),
    });
    t.equal(r.status, 0, r.stderr);
    // JSON lines to the helper's format; the markers go.
    const ours = parse(
      r.stdout
        .split('\n')
        .map((l) => {
          if (!l.startsWith('{')) return l;
          const ev = JSON.parse(l) as Record<string, string>;
          if (ev.DEVPATH === '/bus/mdev' && ev.SYNTH_UUID?.startsWith('00000000-0000-0000-0000-')) return '';
          return ['--', ...Object.entries(ev).map(([k, v]) => `${k}=${v}`)].join('\n');
        })
        .join('\n'),
    );

    t.same(
      ours.map((s) => s.name),
      kernel.map((s) => s.name),
      'the same steps',
    );
    const k = comparable(kernel);
    const o = comparable(ours);
    for (const [i, step] of k.entries()) {
      t.same(o[i]?.output, step.output, `${step.name}: what the commands printed`);
      t.same(o[i]?.events, step.events, `${step.name}: the events, in order`);
    }
    const increasing = (xs: number[]) => xs.every((x, i) => i === 0 || x > xs[i - 1]!);
    t.ok(increasing(seqnums(kernel)), 'the kernel: SEQNUM increases');
    t.ok(increasing(seqnums(ours)) && seqnums(ours).length > 0, 'mdevfs: SEQNUM increases');
  });
}
