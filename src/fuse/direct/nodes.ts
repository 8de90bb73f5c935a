import type { Node } from '../../sysfs/nodes';
import type { Attr } from './protocol';
import { FUSE_ROOT_ID } from './protocol';

/**
 * One inode the kernel knows: a path it looked up, how many lookups it holds (released
 * by FORGET), and the attributes we last reported (what fstat on a stale fd answers).
 * A node whose name disappeared is `detached`: it keeps its id until forgotten, but no
 * longer stands for its path (a device re-created under the same UUID gets a new id, as
 * a new kernfs node gets a new inode).
 */
export interface FuseNode {
  readonly id: bigint;
  readonly path: string;
  readonly name: string;
  parent: FuseNode | undefined;
  nlookup: number;
  lastAttr?: Attr;
  /** The symlink target last given to the kernel, which caches it (FUSE_CACHE_SYMLINKS). */
  target?: string;
  /** For a directory: the change generation its listing was last read at (the kernel caches it). */
  listedGen?: number;
  /** The Kernfs node its path resolved to, at change generation `resolvedGen` (valid while no change happened). */
  resolved?: Node;
  resolvedGen?: number;
  detached: boolean;
  readonly children: Map<string, FuseNode>;
}

export function childPath(parentPath: string, name: string): string {
  return parentPath === '/' ? `/${name}` : `${parentPath}/${name}`;
}

export class NodeTable {
  private readonly byId = new Map<bigint, FuseNode>();
  private readonly byPath = new Map<string, FuseNode>();
  private nextId = FUSE_ROOT_ID + 1n;
  readonly root: FuseNode;

  constructor() {
    this.root = { id: FUSE_ROOT_ID, path: '/', name: '', parent: undefined, nlookup: 1, detached: false, children: new Map() };
    this.byId.set(this.root.id, this.root);
    this.byPath.set('/', this.root);
  }

  get(id: bigint): FuseNode | undefined {
    return this.byId.get(id);
  }

  /** The live node for path, if the kernel holds a lookup of it. */
  atPath(path: string): FuseNode | undefined {
    return this.byPath.get(path);
  }

  get size(): number {
    return this.byId.size;
  }

  /** A successful LOOKUP of name in parent: the same id while the kernel holds one. */
  lookedUp(parent: FuseNode, name: string): FuseNode {
    const path = childPath(parent.path, name);
    let node = this.byPath.get(path);
    if (!node) {
      node = { id: this.nextId++, path, name, parent, nlookup: 0, detached: false, children: new Map() };
      this.byId.set(node.id, node);
      this.byPath.set(path, node);
    }
    // (Re)attach: a parent forgotten and looked up again is a new node with the same path.
    node.parent = parent;
    parent.children.set(name, node);
    node.nlookup++;
    return node;
  }

  forget(id: bigint, n: number): void {
    const node = this.byId.get(id);
    if (!node || node === this.root) return;
    node.nlookup -= n;
    if (node.nlookup > 0) return;
    this.byId.delete(id);
    if (!node.detached) this.unlink(node);
  }

  /**
   * The name is gone: the node and everything below stop standing for their paths.
   * Returns the links among them whose target the kernel may have cached.
   */
  detach(node: FuseNode): FuseNode[] {
    const links: FuseNode[] = [];
    if (node === this.root || node.detached) return links;
    this.unlink(node);
    const walk = (n: FuseNode) => {
      n.detached = true;
      if (n.target !== undefined) links.push(n);
      if (this.byPath.get(n.path) === n) this.byPath.delete(n.path);
      for (const c of n.children.values()) walk(c);
      n.children.clear();
    };
    walk(node);
    return links;
  }

  private unlink(node: FuseNode): void {
    if (this.byPath.get(node.path) === node) this.byPath.delete(node.path);
    if (node.parent?.children.get(node.name) === node) node.parent.children.delete(node.name);
  }
}
