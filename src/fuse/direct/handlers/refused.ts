import { childPath } from '../nodes';
import * as P from '../protocol';
import type { Session } from '../session';
import { live, node } from './inodes';

// Sysfs refuses every change of its namespace from userspace: Kernfs says with which errno.

/** create() always throws: sysfs directories have no create op. */
export function create(s: Session, h: P.InHeader, body: Buffer): void {
  s.kernfs.create(childPath(live(s, h).path, P.cString(body, 16)));
}

export const mkdir = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'mkdir', P.cString(body, 8));
export const mknod = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'mknod', P.cString(body, 16));
export const unlink = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'unlink', P.cString(body));
export const rmdir = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'rmdir', P.cString(body));
export const rename = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'rename', P.cString(body, 8));
export const rename2 = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'rename', P.cString(body, 16));
export const symlink = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'symlink', P.cString(body));
export const link = (s: Session, h: P.InHeader, body: Buffer) => refuse(s, h, 'link', P.cString(body, 8));

function refuse(s: Session, h: P.InHeader, op: string, name: string): void {
  s.kernfs.mutate(op, childPath(node(s, h).path, name));
}
