import pino, { type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** pretty where a person reads stderr (a terminal), else json, the machines' format. */
export function defaultLogFormat(): LogFormat {
  return process.stderr.isTTY ? 'pretty' : 'json';
}

/**
 * Structured logs on stderr; quiet (warn) unless asked. json: one object a line. pretty: pino's
 * own pretty printer (pino-pretty), loaded only when chosen, so that a daemon started by a script
 * does not pay for it.
 */
export function createLogger(level = 'warn', format: LogFormat = 'json'): Logger {
  const options = { level, base: { name: 'mdevfs' } };
  if (format === 'pretty') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    return pino(options, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY }));
  }
  return pino(options, pino.destination({ fd: 2, sync: true }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
