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
   * Who wrote (a write): the FUSE request's pid, uid and gid, and the command name (/proc/PID/comm,
   * read when the write ended, at most once a second per pid). `null` where the backend does not
   * say (fuse-native: its binding passes libfuse's operations no caller, docs/control-api.md); no
   * `pid` (nor `comm`) where the kernel sent 0: a writer outside the daemon's pid namespace.
   */
  caller?: { pid?: number; uid: number; gid: number; comm?: string } | null;
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

type Kind = JournalEntry['kind'];

/**
 * An entry as recorded: raw fields of one shape (numbers, and strings the write already had or
 * a flat copy of its bytes), turned into a JournalEntry only when it is read (since(), a
 * subscriber). A write pays no escaping, no date formatting and no object of a varying shape;
 * the ring keeps these (about 300 bytes a write of a UUID, with its strings).
 */
class Recorded {
  path: string | undefined = undefined;
  /** The caller: pid (0: not seen from the daemon's pid namespace), uid, gid; uid -1: not known. */
  pid = 0;
  uid = -1;
  gid = -1;
  comm: string | undefined = undefined;
  /** The first DATA_MAX bytes, one char a byte (latin1), escaped when read. */
  data: string | undefined = undefined;
  size = -1;
  bytes = -1;
  errno: string | undefined = undefined;
  durationMs = -1;
  fault: string | number | undefined = undefined;
  action: string | undefined = undefined;
  delayMs = -1;
  added: string[] | undefined = undefined;
  removed: string[] | undefined = undefined;
  available: Record<string, [number, number]> | undefined = undefined;
  ueventFrom = -1;
  label: string | undefined = undefined;

  constructor(
    readonly seq: number,
    readonly kind: Kind,
    /** A fault's step or `mark`; a write's is read from its path. */
    readonly op: string | undefined,
    readonly mono: number,
    readonly wallMs: number,
    readonly uevent: number,
  ) {}

  /** The entry as the API shows it, its fields in this order. */
  entry(): JournalEntry {
    // uevent goes last (it is set last): a JSON line reads seq, kind, times, op, path, ...
    const e = { seq: this.seq, kind: this.kind, mono: this.mono, wall: new Date(this.wallMs).toISOString(), op: this.op ?? writeOp(this.path!) } as JournalEntry;
    if (this.path !== undefined) e.path = this.path;
    if (this.kind === 'write') {
      e.caller = this.uid < 0 ? null : { ...(this.pid ? { pid: this.pid } : {}), uid: this.uid, gid: this.gid, ...(this.comm === undefined ? {} : { comm: this.comm }) };
      e.data = escapeLatin1(this.data!);
      e.size = this.size;
      if (this.errno === undefined) e.bytes = this.bytes;
    }
    if (this.fault !== undefined && this.kind === 'fault') e.fault = this.fault;
    if (this.action !== undefined) e.action = this.action;
    if (this.errno !== undefined) e.errno = this.errno;
    if (this.delayMs >= 0) e.delayMs = this.delayMs;
    if (this.durationMs >= 0) e.durationMs = this.durationMs;
    if (this.fault !== undefined && this.kind === 'write') e.fault = this.fault;
    if (this.added) e.added = this.added;
    if (this.removed) e.removed = this.removed;
    if (this.available) e.available = this.available;
    if (this.ueventFrom >= 0) e.ueventFrom = this.ueventFrom;
    if (this.label !== undefined) e.label = this.label;
    e.uevent = this.uevent;
    return e;
  }
}

/** A write in flight: what it began with, and what the core and the engine told while it ran. */
class Pending {
  changed: Set<MdevType> | undefined = undefined;
  added: string[] | undefined = undefined;
  removed: string[] | undefined = undefined;
  fault: string | number | undefined = undefined;

  constructor(
    readonly path: string,
    readonly started: number,
    readonly ueventFrom: number,
    readonly caller: Caller | undefined,
    readonly data: string,
    readonly size: number,
    /** The parent whose directory holds the file, if any. */
    readonly parent: Parent | undefined,
    /** available_instances when the write began (the parent's types), or when a change reached another type. */
    readonly before: Map<MdevType, number>,
  ) {}
}

/**
 * The journal of one emulation: every write to the tree (Kernfs calls begin/end) and every fault
 * fired, in order, in a ring of `capacity` entries. What a write changed is heard from the core
 * and the fault engine while it is in flight: a change concerns the writes whose file is in its
 * parent's directory, or, when none is, every write in flight (an unbind, a parent's removal).
 */
export class Journal implements WriteObserver<Pending> {
  private readonly ring: (Recorded | undefined)[];
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
    this.ring = new Array<Recorded | undefined>(Math.max(1, opts.capacity ?? JOURNAL_CAPACITY));
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
      const r = this.ring[(this.start + i) % this.ring.length]!;
      if (r.seq > seq) out.push(r.entry());
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
    const r = this.record('mark', 'mark', this.now());
    r.label = label;
    return this.append(r);
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
    const p = new Pending(path, this.now(), this.lastSeqnum(), caller, data.toString('latin1', 0, DATA_MAX), data.length, parent, before);
    this.inFlight.add(p);
    return p;
  }

  end(p: Pending, result: number | unknown): void {
    this.inFlight.delete(p);
    const own = ownType(p.path);
    let available: Record<string, [number, number]> | undefined;
    for (const [t, was] of p.before) {
      if (!t.parent.registered) continue; // the type went with its parent
      const now = this.core.availableInstances(t);
      if (now !== was || t.id === own || p.changed?.has(t)) (available ??= {})[t.id] = [was, now];
    }
    const end = this.now();
    const r = this.record('write', undefined, end);
    r.path = p.path;
    const c = p.caller;
    if (c) {
      r.pid = c.pid;
      r.uid = c.uid;
      r.gid = c.gid;
      r.comm = this.comm(c.pid);
    }
    r.data = p.data;
    r.size = p.size;
    if (typeof result === 'number') r.bytes = result;
    else r.errno = result instanceof MdevError ? errnoName(result.errno) : 'EIO';
    r.durationMs = end - p.started;
    r.fault = p.fault;
    r.added = p.added;
    r.removed = p.removed;
    r.available = available;
    r.ueventFrom = p.ueventFrom;
    this.append(r);
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
      (p.changed ??= new Set()).add(dev.type);
      if (dev.state === 'active') (p.added ??= []).push(dev.uuid);
      else if (wasActive) (p.removed ??= []).push(dev.uuid);
    }
  }

  private onFault(f: FaultFired): void {
    const r = this.record('fault', f.ctx.op, this.now());
    r.path = f.ctx.path;
    r.fault = f.rule;
    r.action = f.action;
    r.errno = f.errno;
    if (f.delayMs !== undefined) r.delayMs = f.delayMs;
    this.append(r);
    if (this.inFlight.size === 0 || f.ctx.op === 'read') return;
    // A vendor step's path is the device's directory; an attribute's is the file written.
    const vendor = f.ctx.op === 'create' || f.ctx.op === 'remove';
    const path = f.ctx.path ?? '';
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
  private comm(pid: number): string | undefined {
    if (!pid) return undefined;
    const t = this.now();
    let c = this.comms.get(pid);
    if (!c || t - c.at > 1000 || t < c.at) {
      let comm: string | undefined;
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').replace(/\n$/, '');
      } catch {
        comm = undefined; // gone already
      }
      if (this.comms.size >= 1024) this.comms.clear();
      this.comms.set(pid, (c = { comm, at: t }));
    }
    return c.comm;
  }

  private record(kind: Kind, op: string | undefined, mono: number): Recorded {
    return new Recorded(++this.seq, kind, op, mono, this.wallNow(), this.lastSeqnum());
  }

  private append(r: Recorded): number {
    const cap = this.ring.length;
    if (this.length === cap) {
      this.ring[this.start] = r;
      this.start = (this.start + 1) % cap;
      this.droppedCount++;
    } else {
      this.ring[(this.start + this.length++) % cap] = r;
    }
    if (this.listeners.size > 0) {
      const e = r.entry();
      for (const l of this.listeners) l(e);
    }
    return r.seq;
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
  return escapeLatin1(buf.toString('latin1'));
}

/** escapeBytes of bytes held one char a byte (latin1). */
function escapeLatin1(s: string): string {
  // The usual write (a UUID, a number) needs no escape: the string itself.
  if (/^[\x20-\x5b\x5d-\x7e]*$/.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const b = s.charCodeAt(i);
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n';
    else if (b === 0x09) out += '\\t';
    else if (b >= 0x20 && b < 0x7f) out += s[i];
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}
