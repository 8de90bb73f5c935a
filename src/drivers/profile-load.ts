/**
 * Loading a profile: a built-in by name, or a JSON file (a syntax error at its line:column),
 * validated (profile-validation.ts) before anything else sees it.
 */
import { readFileSync } from 'node:fs';
import { BUILTINS } from './builtin/index';
import { validateProfile } from './profile-validation';
import type { ParentProfile, Profile } from './profile-types';

export const BUILTIN_PROFILES: Record<string, Profile> = BUILTINS;

/** A built-in profile by name, or a JSON file by path; a file is validated before anything else. */
export function loadProfile(nameOrFile: string): Profile {
  const builtin = BUILTIN_PROFILES[nameOrFile];
  if (builtin) return builtin;
  const profile = readJsonFile(nameOrFile);
  validateProfile(profile, nameOrFile);
  return profile;
}

/**
 * What `mdevfs ctl DIR add-parent` takes: a built-in profile by name, or a JSON file holding a
 * profile or one parent (as `{ "parents": [it] }`); validated as `loadProfile` validates.
 */
export function loadParents(nameOrFile: string): ParentProfile[] {
  const builtin = BUILTIN_PROFILES[nameOrFile];
  if (builtin) return builtin.parents;
  const json = readJsonFile(nameOrFile);
  const profile = typeof json === 'object' && json !== null && !Array.isArray(json) && !('parents' in json) ? { parents: [json] } : json;
  validateProfile(profile, nameOrFile);
  return profile.parents;
}

/** A file's JSON; a syntax error is given at its line:column. */
function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const names = Object.keys(BUILTIN_PROFILES).join(', ');
    throw new Error(`profile "${file}" is neither a built-in (${names}) nor a readable file: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const at = syntaxErrorAt(text);
    const line = text.slice(0, at).split('\n').length;
    const column = at - (text.lastIndexOf('\n', at - 1) + 1) + 1;
    // V8's words without its offset and its copy of the text: "Expected ',' or '}' after property value".
    const why = (err as Error).message
      .replace(/ in JSON at position \d+.*$/s, '')
      .replace(/, (\.\.\.)?".*" is not valid JSON$/s, '')
      .replace(/ \(line \d+ column \d+\)$/, '');
    throw new Error(`profile ${file}:${line}:${column}: not JSON: ${at >= text.length ? 'the text ends too early' : why}`);
  }
}

/**
 * Where JSON text stops being JSON (RFC 8259's grammar): the offset of the first character that
 * cannot be there, or the text's length when it ends too early; -1 if it is JSON. V8's messages
 * give no offset for some errors ("Unexpected token ']', "[1,]" is not valid JSON").
 */
export function syntaxErrorAt(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw new RangeError(String(i));
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (c: string) => (text[i] === c ? i++ : fail());
  const string = () => {
    expect('"');
    while (i < text.length && text[i] !== '"') {
      if (text.charCodeAt(i) < 0x20) fail();
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) (i += k), fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) fail();
      }
      i++;
    }
    expect('"');
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === '{') {
          ws();
          string();
          ws();
          expect(':');
        }
        value();
        ws();
        if (text[i] === ',') i++;
        else return void expect(close);
      }
    }
    if (c === '"') return string();
    for (const word of ['true', 'false', 'null']) if (text.startsWith(word, i)) return void (i += word.length);
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail();
    i += m![0].length;
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return -1;
  } catch (err) {
    if (err instanceof RangeError && /^\d+$/.test(err.message)) return Math.min(Number(err.message), text.length);
    throw err;
  }
}
