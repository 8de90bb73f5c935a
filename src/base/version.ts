import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** package.json's version (two levels up from src/X or dist/X), or 'unknown' if it cannot be read. */
export function mdevfsVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
