import type { Row } from './report';

export interface Options {
  json: string;
  /** Devices present for figure 5. */
  devices: number;
  /** Devices present for figure 6 (mdevctl list). */
  mdevctlDevices: number;
  /** Seconds the figure-5 walk through the mount may take before it is extrapolated. */
  walkBudgetS: number;
  /** Writer processes used to fill the tree for figures 5 and 6. */
  writers: number;
  /** Vendor create delay for figure 4. */
  delayMs: number;
  only: Set<string> | null;
  /** node --cpu-prof the figure-5 daemon into this directory. */
  cpuProf: string | null;
  /** A nice-19 spinner per CPU for the whole run (no CPU ever idles). */
  busyCpus: boolean;
  /** Every process of the run on this CPU (taskset), or null. */
  pinCpu: number | null;
}

/** What every figure adds to: table rows, notes under the table, raw data for the JSON. */
export interface Ctx {
  opts: Options;
  rows: Row[];
  notes: string[];
  details: Record<string, unknown>;
  /** Progress on stderr (stdout carries only the table). */
  log(msg: string): void;
}
