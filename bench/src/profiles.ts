import { join } from 'node:path';
import type { FaultSpec, ParentProfile, Profile } from '../../dist/drivers/profile-types';

/** A virtual parent `name` with types `<name>-<t>` for each t; constant capacity unless given. */
export function parent(name: string, types: string[], faults?: FaultSpec, capacity: ParentProfile['capacity'] = { model: 'constant', value: 1_000_000 }): ParentProfile {
  return {
    name,
    path: `devices/virtual/${name}/${name}`,
    class: name,
    mdevDriver: name,
    capacity,
    ...(faults ? { faults } : {}),
    types: types.map((t) => ({ name: t })),
  };
}

export const letters = (n: number, prefix = 't') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** Figure 3: eight types on one parent, no vendor delay, never out of capacity. */
export const cyclesProfile = (): Profile => ({ parents: [parent('cyc', letters(8))] });

/** Figure 4: a 50 ms vendor create; one parent with 32 types, and 8 parents with 4 types each. */
export const fanoutProfile = (delayMs: number): Profile => ({
  parents: [
    parent('fan', letters(32), { createDelayMs: delayMs }),
    ...letters(8, 'q').map((q) => parent(q, letters(4), { createDelayMs: delayMs })),
  ],
});

/** Figures 5 and 6: one parent, a few types, constant capacity (never enforced). */
export const scaleProfile = (types = 4): Profile => ({ parents: [parent('p0', letters(types))] });

/** The create file of a type, the way tools reach it (through class/mdev_bus/<parent>). */
export const createPath = (root: string, parentName: string, typeId: string) =>
  join(root, 'class', 'mdev_bus', parentName, 'mdev_supported_types', typeId, 'create');

export const typeIds = (p: ParentProfile) => p.types.map((t) => `${p.class ?? p.mdevDriver}-${t.name}`);
