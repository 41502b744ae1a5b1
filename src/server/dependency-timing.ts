import type { KyselyPlugin, OperationNode, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';
import { Histogram, type Registry } from 'prom-client';
import type { StockEngine } from '../services/stock/engine.js';

const REDIS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const POSTGRES_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Times every stock-engine call (one Lua script or read: the Redis work of the hot path) by
 * engine method, into `flashsale_redis_duration_seconds`. The engine is wrapped per instance, so
 * every service holding it is measured and the engine itself stays free of metrics code.
 */
export function timeEngineCalls(engine: StockEngine, registry: Registry): void {
  const histogram = new Histogram({
    name: 'flashsale_redis_duration_seconds',
    help: 'stock engine calls to Redis (Lua scripts and reads), by engine operation and outcome',
    labelNames: ['operation', 'outcome'],
    buckets: REDIS_BUCKETS,
    registers: [registry],
  });
  const target = engine as unknown as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(engine))) {
    const method = target[name];
    if (name === 'constructor' || typeof method !== 'function') continue;
    target[name] = function timed(this: unknown, ...args: unknown[]) {
      const end = histogram.startTimer({ operation: name });
      try {
        const result = (method as (...a: unknown[]) => unknown).apply(this, args);
        if (result instanceof Promise) {
          return result.then(
            (value) => (end({ outcome: 'ok' }), value),
            (err: unknown) => {
              end({ outcome: 'error' });
              throw err;
            },
          );
        }
        end({ outcome: 'ok' });
        return result;
      } catch (err) {
        end({ outcome: 'error' });
        throw err;
      }
    };
  }
}

/**
 * A Kysely plugin that times each query from compilation to its result, by statement kind and
 * table, into `flashsale_postgres_duration_seconds`. Kysely hands plugins no failed results, so
 * failing queries go unmeasured here; they surface as errors and in /ready instead.
 */
export class PostgresTiming implements KyselyPlugin {
  private readonly histogram: Histogram<'operation' | 'table'>;
  private readonly started = new WeakMap<object, { end: (labels: Partial<Record<'operation' | 'table', string>>) => number; labels: Record<'operation' | 'table', string> }>();

  constructor(registry: Registry) {
    this.histogram = new Histogram({
      name: 'flashsale_postgres_duration_seconds',
      help: 'PostgreSQL queries through Kysely, from compilation to result, by statement kind and first table',
      labelNames: ['operation', 'table'],
      buckets: POSTGRES_BUCKETS,
      registers: [registry],
    });
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.started.set(args.queryId, { end: this.histogram.startTimer(), labels: { operation: operationOf(args.node), table: tableOf(args.node) } });
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const timing = this.started.get(args.queryId);
    if (timing) {
      this.started.delete(args.queryId);
      timing.end(timing.labels);
    }
    return args.result;
  }
}

/** Raw SQL (`sql\`...\``) names its statement and table in its first words; enough to label it. */
const RAW_STATEMENT = /^\s*(select\b[\s\S]*?\bfrom|insert\s+into|update|delete\s+from)\s+"?([a-z_][a-z0-9_]*)/i;

/** The write inside a statement that starts with a CTE (`with … insert into orders …`), which names it. */
const RAW_WRITE = /\b(insert\s+into|update|delete\s+from)\s+"?([a-z_][a-z0-9_]*)/i;

function rawStatement(node: RootOperationNode): { operation: string; table: string } | null {
  if (node.kind !== 'RawNode') return null;
  const head = node.sqlFragments[0] ?? '';
  const m = /^\s*with\b/i.test(head) ? RAW_WRITE.exec(node.sqlFragments.join(' ')) : RAW_STATEMENT.exec(head);
  if (!m) return null;
  return { operation: m[1].split(/\s/)[0].toLowerCase(), table: m[2].toLowerCase() };
}

function operationOf(node: RootOperationNode): string {
  const raw = rawStatement(node);
  if (raw) return raw.operation;
  switch (node.kind) {
    case 'SelectQueryNode':
      return 'select';
    case 'InsertQueryNode':
      return 'insert';
    case 'UpdateQueryNode':
      return 'update';
    case 'DeleteQueryNode':
      return 'delete';
    case 'RawNode':
      return 'raw';
    default:
      return 'other';
  }
}

/** The statement's first table, so a slow table stands out. */
function tableOf(node: RootOperationNode): string {
  const raw = rawStatement(node);
  if (raw) return raw.table;
  const n = node as unknown as { from?: { froms?: readonly OperationNode[] }; into?: OperationNode; table?: OperationNode };
  const first = n.into ?? n.table ?? n.from?.froms?.[0];
  return (first && nameOf(first)) ?? 'none';
}

function nameOf(node: OperationNode): string | null {
  const n = node as unknown as { kind: string; node?: OperationNode; table?: { identifier?: { name?: string } } };
  if (n.kind === 'AliasNode' && n.node) return nameOf(n.node);
  if (n.kind === 'TableNode') return n.table?.identifier?.name ?? null;
  return null;
}
