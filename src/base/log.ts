import pino, { type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Structured logs on stderr; quiet (warn) unless asked. */
export function createLogger(level = 'warn'): Logger {
  return pino({ level, base: { name: 'mdevfs' } }, pino.destination({ fd: 2, sync: true }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
