import { loadConfig } from '../config.js';
import { startApp } from '../app.js';

// Admin commands over the live stock, against the configured PostgreSQL and Redis:
//   npm run stock -- reconcile            compare units sold in Redis with PostgreSQL, per item
//   npm run stock -- rebuild [saleId...]  make sales live again where Redis lost them
const [command, ...saleIds] = process.argv.slice(2);
if (command !== 'reconcile' && command !== 'rebuild') {
  console.error('usage: npm run stock -- reconcile | rebuild [saleId ...]');
  process.exit(2);
}

// The whole service, minus its background workers and on a throwaway port: the same wiring as a server.
const app = await startApp(loadConfig({ PORT: '0', SEED_SAMPLE_SALE: 'false', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' }), { workers: false });
let failed = false;
try {
  if (command === 'reconcile') {
    const reports = await app.services.recovery.reconcile();
    for (const r of reports) console.log(`${r.saleId}\t${r.saleItemId}\tdrift ${r.drift}`);
    failed = reports.some((r) => r.drift !== 0);
    console.log(failed ? 'DRIFT: Redis and PostgreSQL disagree (see above)' : `consistent: ${reports.length} items`);
  } else {
    const sales = saleIds.length ? await app.services.sales.salesByIds(saleIds) : null;
    if (sales) {
      for (const [i, sale] of sales.entries()) {
        if (!sale) {
          console.log(`${saleIds[i]}\tno such sale`);
          failed = true;
          continue;
        }
        // Replaces the live state whatever it is (missing, partial, stale); waits while another instance repairs it.
        let outcome = await app.services.recovery.repair(sale, 'operator');
        while (outcome === 'busy') {
          await new Promise((r) => setTimeout(r, 250));
          outcome = await app.services.recovery.repair(sale, 'operator');
        }
        console.log(`${sale.id}\t${outcome}`);
      }
    } else {
      await app.services.recovery.checkAll();
      console.log('checked every current sale');
    }
  }
} finally {
  await app.stop();
}
process.exit(failed ? 1 : 0);
