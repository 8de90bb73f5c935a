/**
 * The control API's routes and request bodies, as docs/openapi.json describes them (a test
 * checks the two against each other both ways). Importing this loads nothing else.
 */

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** Every route the server answers: method and path template ({name} is one path segment). */
export const ROUTES: readonly { method: Method; path: string }[] = [
  { method: 'GET', path: '/v1/ping' },
  { method: 'GET', path: '/v1/state' },
  { method: 'GET', path: '/v1/parents' },
  { method: 'POST', path: '/v1/parents' },
  { method: 'DELETE', path: '/v1/parents/{name}' },
  { method: 'GET', path: '/v1/events' },
  { method: 'POST', path: '/v1/mark' },
  { method: 'POST', path: '/v1/wait' },
  { method: 'POST', path: '/v1/reset' },
  { method: 'GET', path: '/v1/faults' },
  { method: 'POST', path: '/v1/faults' },
  { method: 'PUT', path: '/v1/faults/{id}' },
  { method: 'DELETE', path: '/v1/faults/{id}' },
  { method: 'POST', path: '/v1/faults/{id}/release' },
  { method: 'GET', path: '/v1/journal' },
];

/** The device states a wait can ask for: the core's, and `gone` (no such device). */
export const DEVICE_STATES = ['reserved', 'active', 'removing', 'gone'] as const;
export type WaitState = (typeof DEVICE_STATES)[number];

export interface WaitRequest {
  /** ACTION:NAME: a uevent with that ACTION whose DEVPATH ends in NAME, with a SEQNUM above `since`. */
  event?: string;
  /** With `state`: the mdev device (UUID) in that state. */
  device?: string;
  state?: WaitState;
  /**
   * A journal entry with these fields (each given one must be equal; `path` is a glob as a fault
   * rule's), with a journal seq above `since`.
   */
  journal?: { kind?: 'write' | 'fault' | 'mark'; op?: string; path?: string; errno?: string; fault?: string | number; uid?: number };
  /** Events (journal entries, for `journal`) after this SEQNUM (seq) count (default 0: every one still retained). */
  since?: number;
  /** Seconds (default 10, at most 3600). */
  timeout?: number;
}

/** JSON Schemas (draft 2020-12 subset) of the request bodies, by route. */
export const REQUEST_SCHEMAS = {
  'POST /v1/wait': {
    type: 'object',
    additionalProperties: false,
    properties: {
      event: { type: 'string', pattern: '^[a-z]+:[^/\\s]+$' },
      device: { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' },
      state: { enum: [...DEVICE_STATES] },
      journal: {
        type: 'object',
        additionalProperties: false,
        properties: {
          kind: { enum: ['write', 'fault', 'mark'] },
          op: { type: 'string', minLength: 1 },
          path: { type: 'string', minLength: 1 },
          errno: { type: 'string', minLength: 1 },
          fault: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'integer', minimum: 0 }] },
          uid: { type: 'integer', minimum: 0 },
        },
      },
      since: { type: 'integer', minimum: 0 },
      timeout: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
    },
    oneOf: [{ required: ['event'] }, { required: ['device', 'state'] }, { required: ['journal'] }],
  },
  'POST /v1/mark': { type: 'object', additionalProperties: false, properties: { label: { type: 'string', maxLength: 256 } } },
  'POST /v1/reset': { type: 'object', additionalProperties: false, properties: {} },
  /** A parent profile, a profile (its parents), or a built-in profile by name (its parents). */
  'POST /v1/parents': {
    oneOf: [
      { type: 'object', required: ['builtin'], additionalProperties: false, properties: { builtin: { type: 'string', minLength: 1 } } },
      { type: 'object', required: ['parents'], properties: { parents: { type: 'array', minItems: 1, items: { type: 'object' } } } },
      { type: 'object', required: ['name', 'path'], not: { anyOf: [{ required: ['builtin'] }, { required: ['parents'] }] } },
    ],
  },
} as const;

/** The largest request body the server reads (413 above). */
export const MAX_BODY_BYTES = 1024 * 1024;
