import * as fs from 'node:fs';
import type { Logger } from 'pino';
import type { Invalidation, Kernfs } from '../../sysfs/kernfs';
import type { Node as KNode } from '../../sysfs/nodes';
import type { FuseNode, NodeTable } from './nodes';
import { Notifier } from './notifier';
import * as P from './protocol';
import type { Transport } from './transport';

/**
 * What the kernel caches of the tree, and telling it what a change dropped (as kernfs does
 * through kernfs_notify and d_invalidate). Kernfs announces every change (onInvalidate):
 * entries whose name went away lose their node id and their dentry, cached link targets and
 * attributes are dropped, and every directory listing read since the last change is dropped.
 *
 * Directory listings: the kernel caches each directory's READDIR replies (FOPEN_CACHE_DIR)
 * and keeps them across opens (FOPEN_KEEP_CACHE) while no change happened since they were
 * read. `changeGen` counts changes; `listed` holds the directories read since the last one.
 * A FuseNode also keeps the Kernfs node its path resolved to until the next change (resolved()).
 */
export class CacheInvalidator {
  changeGen = 0;
  /** Set once INIT is answered: before that the kernel caches nothing and takes no notification. */
  initDone = false;
  private readonly listed = new Set<FuseNode>();
  /** Notifications, written one batch after another by the notifier thread. */
  private notifyChain: Promise<void> = Promise.resolve();
  /** The next batch, and when it will have been written (null: none waiting to start). */
  private queued: Buffer[] = [];
  private queuedDone: Promise<void> | null = null;
  private readonly notifier: Notifier;

  constructor(
    private readonly conn: Transport,
    private readonly nodes: NodeTable,
    private readonly kernfs: Kernfs,
    private readonly log: Logger,
  ) {
    this.notifier = new Notifier(conn.fd, (err) =>
      this.log.error({ err }, 'fuse: the notifier thread ended; the kernel is no longer told what changed (its caches may go stale)'),
    );
  }

  /** Ends the notifier thread; resolves when it has ended. */
  close(): Promise<void> {
    return this.notifier.close();
  }

  /** Whether the notifier thread may still be inside a write to /dev/fuse. */
  get notifierBusy(): boolean {
    return this.notifier.busy;
  }

  /**
   * What node.path resolves to in Kernfs, walked again only after a change: every change of
   * the tree comes through invalidate() (the kernel's own caches rely on that), so between
   * two changes a path resolves to the same node. Throws as Kernfs.resolve does.
   */
  resolved(node: FuseNode): KNode {
    if (node.resolved && node.resolvedGen === this.changeGen) return node.resolved;
    const kn = this.kernfs.resolve(node.path);
    node.resolved = kn;
    node.resolvedGen = this.changeGen;
    return kn;
  }

  /** A directory's listing is being read: the kernel caches it from now on, until the next change. */
  listing(dir: FuseNode): void {
    dir.listedGen = this.changeGen;
    this.listed.add(dir);
  }

  /**
   * Resolves when the kernel has taken every notification this change needs. Entries and
   * cached link targets go to the notifier thread, all of this change in one batch.
   */
  invalidate(inv: Invalidation): Promise<void> {
    this.dropListings();
    if (!this.initDone || this.conn.stopping || (inv.entries.length === 0 && inv.attrs.length === 0)) return Promise.resolve();
    const batch: Buffer[] = [];
    for (const path of inv.entries) {
      const node = this.nodes.atPath(path);
      if (!node || !node.parent) continue;
      // A superset is allowed: only a name that really went away loses its node id.
      if (this.kernfs.find(path) === undefined) {
        // A removed link's cached target goes with it (its inode may live on, held open).
        // Dropped before the entry: once the entry is gone the kernel may have evicted the
        // inode already, and the notification would only come back ENOENT.
        for (const link of this.nodes.detach(node)) this.dropTarget(link, batch);
      } else if (node.target !== undefined) this.dropTarget(node, batch);
      const parent = this.nodes.atPath(node.parent.path);
      if (parent) batch.push(P.invalEntry(parent.id, node.name));
    }
    for (const path of inv.attrs) {
      const node = this.nodes.atPath(path);
      if (node) node.target === undefined ? this.notifyAttrs(node) : this.dropTarget(node, batch);
    }
    if (batch.length > 0) this.notify(batch);
    return this.notifyChain;
  }

  /**
   * Drops a link's attributes and the target the kernel cached (FUSE_CACHE_SYMLINKS): its
   * page cache, which a READLINK waiting for us may hold locked, so only from the thread.
   */
  dropTarget(node: FuseNode, batch: Buffer[]): void {
    node.target = undefined;
    batch.push(P.invalInode(node.id, true));
  }

  /**
   * Any change may have changed any listing (the tree does not say which): every directory
   * whose listing the kernel may have cached since the last change loses it, and no open
   * keeps a listing read before now (OPENDIR). A directory's pages are locked only while the
   * kernel copies entries in or out, never while it waits for us, so this is written at once
   * from the main thread. It matters for a directory already open (a rewinddir, or a first
   * read after the change); a new open would drop the listing anyway.
   */
  private dropListings(): void {
    this.changeGen++;
    if (this.listed.size === 0) return;
    if (this.initDone && !this.conn.stopping) for (const dir of this.listed) this.notifyNow(P.invalInode(dir.id, true));
    this.listed.clear();
  }

  // ---- writing notifications ---------------------------------------------------------------

  /**
   * Entry and page notifications go out in batches, one batch at a time, after every reply
   * written before them (replies are synchronous, so a LOOKUP answered just before a removal
   * cannot re-create the entry after its invalidation), and never from the main thread: the
   * kernel may block the write on a directory lock that a request waiting for us holds.
   * What one change and the changes right after it (the steps of one removal, the changes of
   * concurrent writes) announce goes as one batch: it is sent at the end of this turn of the
   * event loop, or when the batch before it is done, whichever is later. One thread round
   * trip per batch. Resolves when the batch that carries bufs has been written.
   */
  notify(bufs: Buffer[]): Promise<void> {
    for (const b of bufs) this.queued.push(b);
    if (!this.queuedDone) {
      const before = this.notifyChain;
      this.queuedDone = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => before)
        .then(async () => {
          const batch = this.queued;
          this.queued = [];
          this.queuedDone = null;
          if (this.conn.stopping || batch.length === 0) return;
          for (const error of await this.notifier.write(batch)) this.notifyFailed(error);
        });
      this.notifyChain = this.queuedDone;
    }
    return this.queuedDone;
  }

  /** ENOENT: the kernel had nothing cached under that name; anything else is worth a word. */
  private notifyFailed(error: string | null | undefined): void {
    if (error && error !== 'ENOENT' && error !== 'ENODEV' && error !== 'ENOTCONN' && !this.conn.stopping) this.log.warn({ error }, 'fuse: notification failed');
  }

  /**
   * Attributes only (FUSE_NOTIFY_INVAL_INODE with off < 0) are written at once from the
   * main thread: the kernel takes no lock there that a request waiting for us could hold
   * (it bumps the attribute version and marks them stale), so the write cannot block.
   */
  private notifyAttrs(node: FuseNode): void {
    this.notifyNow(P.invalInode(node.id));
  }

  private notifyNow(buf: Buffer): void {
    try {
      fs.writeSync(this.conn.fd, buf);
    } catch (err) {
      this.notifyFailed((err as NodeJS.ErrnoException).code);
    }
  }
}
