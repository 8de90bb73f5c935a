import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './daemon';

export interface MarkedBlock {
  /** The HTML comment's kind and value just before the block: `<!-- file: PATH -->`. */
  kind: string;
  value: string;
  line: number;
  body: string;
}

/** The fenced blocks of a markdown file preceded by an HTML comment `<!-- KIND: VALUE -->` (one blank line allowed between). */
export function markedBlocks(file: string): MarkedBlock[] {
  const lines = readFileSync(join(REPO, file), 'utf8').split('\n');
  const out: MarkedBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^<!-- ([a-z ]+): (.*?) -->$/.exec(lines[i]!);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j]!.trim() === '') j++;
    if (!/^```\S*\s*$/.test(lines[j] ?? '')) continue;
    const body: string[] = [];
    for (j++; j < lines.length && !/^```\s*$/.test(lines[j]!); j++) body.push(lines[j]!);
    out.push({ kind: m[1]!, value: m[2]!, line: i + 1, body: body.join('\n') + '\n' });
  }
  return out;
}

/** The first fenced block right after the paragraph that ends with `intro` (for blocks without a mark). */
export function blockAfter(file: string, intro: string): string {
  const text = readFileSync(join(REPO, file), 'utf8');
  const at = text.indexOf(intro);
  if (at < 0) throw new Error(`${file}: no "${intro}"`);
  const m = /```\S*\n([\s\S]*?)```/.exec(text.slice(at));
  if (!m) throw new Error(`${file}: no block after "${intro}"`);
  return m[1]!;
}
