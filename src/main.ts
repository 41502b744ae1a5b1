import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createDb, ensureDatabase, migrateToLatest } from './db/database.js';

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}

// WORKERS only decides how many processes this entry point starts, so it is read here and not
// in the app's config: each worker is a complete, stateless instance (shared Redis and PostgreSQL).
const workers = process.env.WORKERS === 'auto' ? availableParallelism() : Number(process.env.WORKERS ?? '1');
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  console.error(`invalid configuration:\n  WORKERS: must be a whole number from 1 to 64, or "auto"; got ${process.env.WORKERS}`);
  process.exit(1);
}

if (workers > 1 && cluster.isPrimary) await superviseWorkers(config, workers);
else await serve(config);

async function serve(config: Config): Promise<void> {
  // Imported here so a cluster primary, which serves nothing, does not load the schema (~100 MB RSS).
  const { startApp } = await import('./app.js');
  const app = await startApp(config);
  let shuttingDown = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (shuttingDown) return;
      shuttingDown = true;
      app.log.info({ signal }, 'shutting down');
      app.stop().then(
        () => process.exit(0),
        (err) => {
          app.log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

/**
 * The node:cluster primary: migrates once, forks the workers (they share the listening socket),
 * replaces a worker that dies after it was serving, and passes SIGTERM on so each drains its own
 * requests and subscriptions.
 */
async function superviseWorkers(config: Config, count: number): Promise<void> {
  // Workers starting together would race to create the database and its tables.
  await ensureDatabase(config.DATABASE_URL);
  const { db } = createDb(config.DATABASE_URL, 1);
  await migrateToLatest(db);
  await db.destroy();

  let stopping = false;
  const listening = new Set<number>();
  // Only the first worker may seed the sample sale, so a development start creates it once.
  const fork = (index: number) => cluster.fork({ WORKER_INDEX: String(index), ...(index > 0 ? { SEED_SAMPLE_SALE: 'false' } : {}) });
  const indexOf = new Map<number, number>();
  for (let i = 0; i < count; i++) indexOf.set(fork(i).id, i);

  cluster.on('listening', (worker) => listening.add(worker.id));
  cluster.on('exit', (worker, code, signal) => {
    const index = indexOf.get(worker.id) ?? 0;
    if (!stopping) {
      if (!listening.has(worker.id)) {
        // It never served: a configuration or startup problem that a restart would only repeat.
        console.error(`worker ${index} exited (${signal ?? code}) before it was listening; stopping`);
        stopping = true;
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
        process.exitCode = 1;
      } else {
        console.error(`worker ${index} exited (${signal ?? code}); starting a new one`);
        indexOf.set(fork(index).id, index);
      }
    }
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(process.exitCode ?? 0);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      setTimeout(() => process.exit(1), config.SHUTDOWN_TIMEOUT_MS + 1500).unref();
    });
  }
}
