import pino, { type Logger } from 'pino';

/** One root logger; services take children with a `source` field. Delivery details never reach it. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'flash-sale-api' },
    // Delivery details and secrets never reach a log line, at whatever depth a caller nests them.
    redact: {
      paths: ['delivery', 'password', 'authorization', 'token', '*.delivery', '*.password', '*.authorization', '*.token', '*.*.delivery', '*.*.password', '*.*.authorization', 'req.headers.authorization', 'request.headers.authorization'],
      censor: '[redacted]',
    },
  });
}
