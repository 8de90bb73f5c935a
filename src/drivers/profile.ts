import { readFileSync } from 'node:fs';
import type { Clock } from '../core/clock';
import type { MdevCore } from '../core/core';
import type { Parent, ParentPlacement } from '../core/model';
import { ConfiguredDriver } from './configured-driver';
import type { ParentProfile, Profile } from './profile-types';
import { AP, GVT, SAMPLES } from './samples';

export const BUILTIN_PROFILES: Record<string, Profile> = { samples: SAMPLES, gvt: GVT, ap: AP };

/** A built-in profile by name, or a JSON file by path. */
export function loadProfile(nameOrFile: string): Profile {
  const builtin = BUILTIN_PROFILES[nameOrFile];
  if (builtin) return builtin;
  let text: string;
  try {
    text = readFileSync(nameOrFile, 'utf8');
  } catch (err) {
    const names = Object.keys(BUILTIN_PROFILES).join(', ');
    throw new Error(`profile "${nameOrFile}" is neither a built-in (${names}) nor a readable file: ${(err as Error).message}`);
  }
  const profile = JSON.parse(text) as Profile;
  validateProfile(profile);
  return profile;
}

export function validateProfile(p: Profile): void {
  if (!p || !Array.isArray(p.parents)) throw new Error('profile: "parents" must be an array');
  const names = new Set<string>();
  for (const parent of p.parents) {
    for (const key of ['name', 'path', 'mdevDriver'] as const) {
      if (typeof parent[key] !== 'string' || parent[key] === '') throw new Error(`profile: parent needs a string "${key}"`);
    }
    if (names.has(parent.name)) throw new Error(`profile: parent "${parent.name}" appears twice`);
    names.add(parent.name);
    if (!parent.capacity || typeof parent.capacity.model !== 'string') throw new Error(`profile: parent "${parent.name}" needs a capacity model`);
    if (!Array.isArray(parent.types) || parent.types.length === 0) throw new Error(`profile: parent "${parent.name}" needs types`);
    if (parent.path.split('/')[0] !== 'devices') throw new Error(`profile: parent path "${parent.path}" must start with devices/`);
  }
}

export function placementOf(p: ParentProfile): ParentPlacement {
  return {
    name: p.name,
    path: p.path.split('/').filter(Boolean),
    className: p.class,
    pci: p.pci && { ...p.pci, numaNode: p.pci.numaNode ?? -1 },
  };
}

export function registerProfileParent(core: MdevCore, p: ParentProfile, clock: Clock): Parent {
  return core.registerParent(placementOf(p), new ConfiguredDriver(p, clock));
}
