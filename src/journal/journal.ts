import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { CoreEvent, MdevCore } from '../core/core';
import { MdevError, errnoName } from '../base/errno';
import type { MdevDevice, MdevType, Parent } from '../core/mdev-objects';
import type { FaultEngine, FaultFired } from '../faults/engine';
import { writeStep } from '../faults/spec';
import type { Caller, WriteObserver } from '../sysfs/kernfs';

/**
 * One thing done to the tree, in order.
 *
 * Ordering with the uevents: an entry's `seq` is the journal's own (1, 2, 3, ... with no gap,
 * never reused, also not by clear()); the uevents' SEQNUMs are not touched (the kernel conformance
 * fixtures compare them). Each entry says where it falls among them instead: `uevent` is the last
 * SEQNUM sent at its time (a write: when it returned, its uevents sent), and a write's `ueventFrom`
 * the last one when it began, so the events it caused are among (ueventFrom, uevent] — exactly
 * those when no other write overlapped it.
 */
export interface JournalEntry {
  seq: number;
  /** `write`: a write(2) to an attribute; `fault`: a fault rule fired; `mark`: journal.mark(). */
  kind: 'write' | 'fault' | 'mark';
  /** Monotonic milliseconds (the daemon's clock; for a write, when it returned). */
  mono: number;
  /** Wall-clock time, ISO 8601. */
  wall: string;
  /**
   * A write: `create`, `remove`, `bind`, `unbind`, `sriov_numvfs`, `current_vgpu_type` or `store`
   * (another attribute), by the file written; a fault: the rule's step; a mark: `mark`.
   */
  op: string;
  /** The canonical sysfs path (`/sys/...`): the file written or read, or a vendor step's device directory. */
  path?: string;
  /**
   * Who wrote: the FUSE request's pid, uid and gid, and the command name (/proc/PID/comm, read when
   * the write began). Absent where the backend does not say (fuse-native: libfuse's context is not
   * exposed by its binding).
   */
  caller?: { pid: number; uid: number; gid: number; comm?: string };
  /** What was written: printable ASCII as is, `\\`, `\n`, `\t`, other bytes `\xNN`; the first DATA_MAX bytes. */
  data?: string;
  /** The whole write's length in bytes (more than `data` shows when it was cut). */
  size?: number;
  /** The write's result: the byte count, or the errno's name. */
  bytes?: number;
  errno?: string;
  durationMs?: number;
  /** A write: the id of the last fault rule that fired on it. A fault entry: the rule's id. */
  fault?: string | number;
  /** A fault entry: what it did (`errno`, `delay`, `hang`, `succeed`, `content`), with its errno or delay. */
  action?: string;
  delayMs?: number;
  /** A write: the mdevs it created and removed (UUIDs). */
  added?: string[];
  removed?: string[];
  /**
   * A write: available_instances [before, after] of the types concerned: those of the parent whose
   * directory holds the file written (where the value changed, or the type's own `create`), and
   * those of the devices it created or removed (before: when the write began, or for a type
   * reached otherwise, e.g. a parent's removal, when its device's removal began).
   */
  available?: Record<string, [number, number]>;
  uevent: number;
  ueventFrom?: number;
  /** A mark's label. */
  label?: string;
}

export interface JournalOptions {
  /** Entries kept in memory (the oldest go first, counted in `dropped`). */
  capacity?: number;
  /** The last uevent SEQNUM sent (0: none). */
  lastSeqnum?: () => number;
  /** Monotonic milliseconds; default performance.now(). */
  now?: () => number;
  /** Wall clock, epoch milliseconds; default Date.now(). */
  wallNow?: () => number;
}

/** Bytes of a write that an entry shows. */
export const DATA_MAX = 256;
/** Entries kept by default. */
export const JOURNAL_CAPACITY = 10_000;

interface Pending {
  path: string;
  started: number;
  ueventFrom: number;
  caller: JournalEntry['caller'];
  data: string;
  size: number;
  /** The parent whose directory holds the file, if any. */
  parent?: Parent;
  before: Map<MdevType, number>;
  changed: Set<MdevType>;
  added: string[];
  removed: string[];
  fault?: string | number;
}

/**
 * The journal of one emulation: every write to the tree (Kernfs calls begin/end) and every fault
 * fired, in order, in a ring of `capacity` entries. What a write changed is heard from the core
 * and the fault engine while it is in flight: a change concerns the writes whose file is in its
 * parent's directory, or, when none is, every write in flight (an unbind, a parent's removal).
 */
export class Journal implements WriteObserver<Pending> {
  private readonly ring: (JournalEntry | undefined)[];
  private start = 0;
  private length = 0;
  private seq = 0;
  private droppedCount = 0;
  private readonly listeners = new Set<(e: JournalEntry) => void>();
  private readonly inFlight = new Set<Pending>();
  /** Devices that became active (so their release is a removal, not a failed create's undoing). */
  private readonly active = new WeakSet<MdevDevice>();
  private readonly dirs = new WeakMap<Parent, string>();
  private readonly comms = new Map<number, { comm: string | undefined; at: number }>();
  private readonly now: () => number;
  private readonly wallNow: () => number;
  private readonly lastSeqnum: () => number;

  constructor(
    private readonly core: MdevCore,
    faults: FaultEngine | undefined,
    opts: JournalOptions = {},
  ) {
    this.ring = new Array<JournalEntry | undefined>(Math.max(1, opts.capacity ?? JOURNAL_CAPACITY));
    this.now = opts.now ?? (() => performance.now());
    this.wallNow = opts.wallNow ?? Date.now;
    this.lastSeqnum = opts.lastSeqnum ?? (() => 0);
    core.subscribe((ev) => this.onCore(ev));
    faults?.onFire((f) => this.onFault(f));
  }

  /** Entries lost to the ring's bound since the start (or the last clear()). */
  get dropped(): number {
    return this.droppedCount;
  }

  /** The last entry's seq (0: none yet). */
  get lastSeq(): number {
    return this.seq;
  }

  /**
   * The entries kept whose seq is greater than `seq`, oldest first. Entries the ring dropped are
   * gone: a reader sees the gap as a first seq greater than seq + 1 (and `dropped` grew).
   */
  since(seq = 0): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (let i = 0; i < this.length; i++) {
      const e = this.ring[(this.start + i) % this.ring.length]!;
      if (e.seq > seq) out.push(e);
    }
    return out;
  }

  /** Calls fn with every entry from now on. Returns the unsubscribe function. */
  subscribe(fn: (e: JournalEntry) => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  /** Adds a mark (a test's "from here on"); returns its seq. */
  mark(label?: string): number {
    return this.append({ kind: 'mark', op: 'mark', ...(label === undefined ? {} : { label }) }).seq;
  }

  /** Forgets the entries kept and the dropped count; seq goes on from where it was. */
  clear(): void {
    this.ring.fill(undefined);
    this.start = this.length = this.droppedCount = 0;
  }

  // ---- Kernfs's write path -------------------------------------------------------------

  begin(path: string, data: Buffer, caller: Caller | undefined): Pending {
    const parent = this.parentOf(path);
    const before = new Map<MdevType, number>();
    if (parent) for (const t of parent.types.values()) before.set(t, this.core.availableInstances(t));
    const p: Pending = {
      path,
      started: this.now(),
      ueventFrom: this.lastSeqnum(),
      caller: caller && { pid: caller.pid, uid: caller.uid, gid: caller.gid, ...this.comm(caller.pid) },
      data: escapeBytes(data.subarray(0, DATA_MAX)),
      size: data.length,
      parent,
      before,
      changed: new Set(),
      added: [],
      removed: [],
    };
    this.inFlight.add(p);
    return p;
  }

  end(p: Pending, result: number | unknown): void {
    this.inFlight.delete(p);
    const own = ownType(p.path);
    const available: Record<string, [number, number]> = {};
    for (const [t, was] of p.before) {
      if (!t.parent.registered) continue; // the type went with its parent
      const now = this.core.availableInstances(t);
      if (now !== was || t.id === own || p.changed.has(t)) available[t.id] = [was, now];
    }
    const errno = typeof result === 'number' ? undefined : result instanceof MdevError ? errnoName(result.errno) : 'EIO';
    const end = this.now();
    this.append({
      kind: 'write',
      op: writeOp(p.path),
      path: p.path,
      ...(p.caller ? { caller: p.caller } : {}),
      data: p.data,
      size: p.size,
      ...(errno === undefined ? { bytes: result as number } : { errno }),
      durationMs: end - p.started,
      ...(p.fault !== undefined ? { fault: p.fault } : {}),
      ...(p.added.length ? { added: p.added } : {}),
      ...(p.removed.length ? { removed: p.removed } : {}),
      ...(Object.keys(available).length ? { available } : {}),
      ueventFrom: p.ueventFrom,
    });
  }

  // ---- what the writes did ---------------------------------------------------------------

  private onCore(ev: CoreEvent): void {
    if (ev.kind !== 'state') return;
    const dev = ev.dev;
    if (dev.state === 'active' && this.active.has(dev)) return; // a vetoed removal: back to active
    if (dev.state !== 'active' && dev.state !== 'released' && dev.state !== 'removing') return;
    if (dev.state === 'active') this.active.add(dev);
    const wasActive = dev.state === 'released' && this.active.delete(dev);
    if (this.inFlight.size === 0) return;
    for (const p of this.concerned(dev.parent)) {
      if (!p.before.has(dev.type)) p.before.set(dev.type, this.core.availableInstances(dev.type));
      if (dev.state === 'removing') continue;
      p.changed.add(dev.type);
      if (dev.state === 'active') p.added.push(dev.uuid);
      else if (wasActive) p.removed.push(dev.uuid);
    }
  }

  private onFault(f: FaultFired): void {
    const e = this.append({
      kind: 'fault',
      op: f.ctx.op,
      ...(f.ctx.path !== undefined ? { path: f.ctx.path } : {}),
      fault: f.rule,
      action: f.action,
      ...(f.errno !== undefined ? { errno: f.errno } : {}),
      ...(f.delayMs !== undefined ? { delayMs: f.delayMs } : {}),
    });
    if (this.inFlight.size === 0 || f.ctx.op === 'read') return;
    // A vendor step's path is the device's directory; an attribute's is the file written.
    const vendor = f.ctx.op === 'create' || f.ctx.op === 'remove';
    const path = e.path ?? '';
    const dir = path.slice(0, path.lastIndexOf('/') + 1);
    const exact = [...this.inFlight].filter((p) => (vendor ? p.path.startsWith(dir) : p.path === path));
    for (const p of exact.length > 0 || !vendor ? exact : this.inFlight) p.fault = f.rule;
  }

  private concerned(parent: Parent): Iterable<Pending> {
    if (this.inFlight.size === 1) return this.inFlight; // the usual case: one writer at a time
    const dir = this.dirOf(parent);
    const near = [...this.inFlight].filter((p) => p.path.startsWith(dir));
    return near.length > 0 ? near : this.inFlight;
  }

  private parentOf(path: string): Parent | undefined {
    for (const p of this.core.parents.values()) if (p.registered && path.startsWith(this.dirOf(p))) return p;
    return undefined;
  }

  private dirOf(parent: Parent): string {
    let d = this.dirs.get(parent);
    if (d === undefined) this.dirs.set(parent, (d = `/sys/${parent.placement.path.join('/')}/`));
    return d;
  }

  /** /proc/PID/comm, read at most once a second per pid (a benchmark's writer writes thousands of times). */
  private comm(pid: number): { comm?: string } {
    if (!pid) return {};
    const t = performance.now();
    let c = this.comms.get(pid);
    if (!c || t - c.at > 1000) {
      let comm: string | undefined;
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').replace(/\n$/, '');
      } catch {
        comm = undefined; // gone already
      }
      if (this.comms.size >= 1024) this.comms.clear();
      this.comms.set(pid, (c = { comm, at: t }));
    }
    return c.comm === undefined ? {} : { comm: c.comm };
  }

  private append(fields: Omit<JournalEntry, 'seq' | 'mono' | 'wall' | 'uevent'>): JournalEntry {
    const mono = this.now();
    const { kind, ...rest } = fields;
    const e: JournalEntry = { seq: ++this.seq, kind, mono, wall: new Date(this.wallNow()).toISOString(), ...rest, uevent: this.lastSeqnum() };
    const cap = this.ring.length;
    if (this.length === cap) {
      this.ring[this.start] = e;
      this.start = (this.start + 1) % cap;
      this.droppedCount++;
    } else {
      this.ring[(this.start + this.length++) % cap] = e;
    }
    for (const l of this.listeners) l(e);
    return e;
  }
}

/** The type whose `create` a path is, if it is one. */
function ownType(path: string): string | undefined {
  const m = /\/mdev_supported_types\/([^/]+)\/create$/.exec(path);
  return m?.[1];
}

/** What a write to path is, by the file: the engine's steps, and `create`/`remove` for the mdev files. */
export function writeOp(path: string): string {
  if (ownType(path) !== undefined) return 'create';
  if (path.endsWith('/remove')) return 'remove';
  return writeStep(path);
}

/** Bytes as text a line of JSON shows plainly: printable ASCII as is, the rest escaped. */
export function escapeBytes(buf: Buffer): string {
  let s = '';
  for (const b of buf) {
    if (b === 0x5c) s += '\\\\';
    else if (b === 0x0a) s += '\\n';
    else if (b === 0x09) s += '\\t';
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return s;
}
