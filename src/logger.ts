import pino, { type Logger } from 'pino';

/** One root logger; services take children with a `source` field. Delivery details never reach it. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'flash-sale-api' },
    redact: { paths: ['*.delivery', '*.password', '*.authorization', 'req.headers.authorization'], censor: '[redacted]' },
  });
}
