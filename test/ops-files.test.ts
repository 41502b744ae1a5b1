import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { API_COMMAND } from '../load/harness/server-process.js';
import { parseConfig } from '../src/config.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { metricFamilies, metricNamesIn } from './support/promql-names.js';

// Docker does not run where the tests run, so the stack's files are checked against the code:
// what compose starts, how nginx routes, what Prometheus scrapes and what Grafana queries.

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string>;
  ports?: string[];
  expose?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  volumes?: string[];
  profiles?: string[];
  network_mode?: string;
}

const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
const services = compose.services;
const apiNames = Object.keys(services).filter((name) => /^api-\d+$/.test(name));

/**
 * What an operator puts in `.env`, as `.env.example` asks: a 48-byte JWT_SECRET, a 32-byte DATA_KEY
 * (base64, `openssl rand`), a password.
 */
const operatorEnv: Record<string, string> = {
  JWT_SECRET: randomBytes(48).toString('base64'),
  DATA_KEY: randomBytes(32).toString('base64'),
  GRAFANA_ADMIN_PASSWORD: randomBytes(12).toString('base64url'),
};

/** The variables `.env.example` lists (`NAME=` lines, commented-out optional ones included). */
const documentedEnv = new Set([...read('.env.example').matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));

/**
 * As compose resolves it: `${NAME:-default}` with NAME unset, `${NAME:?message}` (required) with
 * the value an operator set from `.env.example` (`env`), or a failure naming NAME, as compose fails.
 */
function interpolate(value: string, env: Record<string, string> = operatorEnv): string {
  return value
    .replace(/\$\{([A-Z0-9_]+):-([^}]*)\}/g, (_, _name: string, fallback: string) => fallback)
    .replace(/\$\{([A-Z0-9_]+):\?([^}]*)\}/g, (_, name: string) => {
      if (!env[name]) throw new Error(`required variable ${name} is not set`);
      return env[name];
    });
}

/** Every `${NAME:?...}` of a compose file. */
const requiredIn = (text: string) => new Set([...text.matchAll(/\$\{([A-Z0-9_]+):\?[^}]*\}/g)].map((m) => m[1]));

/** Variables the server reads: the keys of the config schema, plus what src/main.ts reads itself. */
function envTheServerReads(): Set<string> {
  const config = read('src/config.ts');
  const schemaBody = config.slice(config.indexOf('z\n  .object({'), config.indexOf('.superRefine('));
  const keys = [...schemaBody.matchAll(/^ {4}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]);
  const direct = [...read('src/main.ts').matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]);
  return new Set([...keys, ...direct]);
}

/** Host side of "host:container" port mappings, by container port. */
function published(service: ComposeService): Map<string, string> {
  return new Map((service.ports ?? []).map((p) => {
    const [host, container] = String(p).split(':');
    return [container, host];
  }));
}

/** Bind mounts: repository path → container path. */
function bindMounts(service: ComposeService): Map<string, string> {
  return new Map((service.volumes ?? []).filter((v) => v.startsWith('./')).map((v) => {
    const [source, target] = v.split(':');
    return [source.slice(2), target];
  }));
}

function mountedFile(service: string, containerPath: string): string {
  const entry = [...bindMounts(services[service])].find(([, target]) => target === containerPath);
  if (!entry) throw new Error(`${service} mounts nothing at ${containerPath}`);
  return entry[0];
}

describe('docker-compose.yml', () => {
  it('runs PostgreSQL, Redis, two API instances, nginx, Prometheus, Grafana, and k6 only under the load profile', () => {
    expect(Object.keys(services).sort()).toEqual(['api-1', 'api-2', 'grafana', 'k6', 'nginx', 'postgres', 'prometheus', 'redis']);
    expect(apiNames).toEqual(['api-1', 'api-2']);
    for (const [name, s] of Object.entries(services)) {
      expect(s.image ?? s.build, `${name} has an image or a build`).toBeTruthy();
      if (name === 'k6') expect(s.profiles).toEqual(['load']);
      else expect(s.profiles, `${name} starts by default`).toBeUndefined();
    }
    for (const name of apiNames) expect(services[name].build).toBe('.');
  });

  it('publishes the API through nginx on 4000 (where the single API used to be), Prometheus on 9090 and Grafana on 3000', () => {
    expect(published(services.nginx).get('80')).toBe('4000');
    expect(published(services.prometheus).get('9090')).toBe('9090');
    expect(published(services.grafana).get('3000')).toBe('3000');
    expect(published(services.postgres).get('5432')).toBe('5432');
    expect(published(services.redis).get('6379')).toBe('6379');
    // Instances are reached only through nginx (and by Prometheus on the compose network).
    for (const name of apiNames) expect(services[name].ports).toBeUndefined();
  });

  it('gives every API instance only variables the server reads, and a configuration it accepts', () => {
    const known = envTheServerReads();
    expect(known.has('DATABASE_URL') && known.has('REDIS_CLUSTER_NODES') && known.has('WORKERS')).toBe(true);
    for (const name of apiNames) {
      const env = Object.fromEntries(Object.entries(services[name].environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));
      for (const key of Object.keys(env)) expect(known.has(key), `${name}: ${key} is read by the server`).toBe(true);
      const config = parseConfig(env);
      expect(config).toMatchObject({ HOST: '0.0.0.0', PORT: 4000, TRUST_PROXY_HOPS: 1, NODE_ENV: 'production' });
      expect(new URL(config.DATABASE_URL).hostname).toBe('postgres');
      expect(new URL(config.REDIS_URL).hostname).toBe('redis');
      // The API port for nginx, the metrics port for Prometheus; neither is published.
      expect(config.METRICS_PORT).toBeDefined();
      expect(services[name].expose).toEqual([String(config.PORT), String(config.METRICS_PORT)]);
      expect(services[name].healthcheck?.test.join(' ')).toContain(`127.0.0.1:${config.PORT}/ready`);
    }
    // One instance seeds the development sample sale; two would race to create it.
    expect(apiNames.filter((n) => services[n].environment?.SEED_SAMPLE_SALE === 'true')).toEqual(['api-1']);
    expect(read('Dockerfile')).toMatch(/^EXPOSE 4000$/m);
  });

  it('runs production with its secrets from the environment, documented in .env.example, and refuses to start without them', () => {
    const text = read('docker-compose.yml');
    const required = requiredIn(text);
    expect([...required].sort()).toEqual(['DATA_KEY', 'GRAFANA_ADMIN_PASSWORD', 'JWT_SECRET']);
    for (const name of required) expect(documentedEnv.has(name), `.env.example documents ${name}`).toBe(true);
    // .env.example ships no usable secret: copied unfilled, compose still refuses.
    expect(read('.env.example')).toMatch(/^JWT_SECRET=$/m);
    expect(read('.env.example')).toMatch(/^DATA_KEY=$/m);
    // No development default is left to fall back on.
    expect(text).not.toContain('dev-secret-change-me');
    for (const name of apiNames) {
      const environment = services[name].environment ?? {};
      expect(environment.NODE_ENV).toBe('production');
      for (const secret of ['JWT_SECRET', 'DATA_KEY']) {
        expect(String(environment[secret]), `${name}: ${secret}`).toMatch(new RegExp(`^\\$\\{${secret}:\\?`));
        expect(() => interpolate(String(environment[secret]), { ...operatorEnv, [secret]: '' }), `${name} without ${secret}`).toThrow(secret);
      }
    }
    expect(String(services.k6.environment?.JWT_SECRET)).toMatch(/^\$\{JWT_SECRET:\?/);
  });

  it('keeps an easy local mode: compose.dev.yml runs development with the public development values of compose.dev.env', () => {
    const dev = parseYaml(read('compose.dev.yml')) as { services: Record<string, ComposeService> };
    expect(Object.keys(dev.services).sort()).toEqual(apiNames);
    const devEnv = Object.fromEntries([...read('compose.dev.env').matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1], m[2]]));
    // It sets every required variable, so the base file interpolates.
    for (const name of requiredIn(read('docker-compose.yml'))) expect(devEnv[name], name).toBeTruthy();
    for (const name of apiNames) {
      expect(Object.keys(dev.services[name]), `${name} overrides only its environment`).toEqual(['environment']);
      const merged = { ...services[name].environment, ...dev.services[name].environment };
      const env = Object.fromEntries(Object.entries(merged).map(([k, v]) => [k, interpolate(String(v), devEnv)]));
      const config = parseConfig(env);
      expect(config.NODE_ENV).toBe('development');
      // The same secrets in production are refused: the local mode cannot leak into a deployment.
      expect(() => parseConfig({ ...env, NODE_ENV: 'production' })).toThrow(/JWT_SECRET[\s\S]*DATA_KEY/);
    }
  });

  it('runs the compiled service with the same node flags in npm start, the Dockerfile, the bench and the tests', () => {
    const command = [...API_COMMAND.nodeArgs, API_COMMAND.entry];
    const cmd = /^CMD (\[.*\])$/m.exec(read('Dockerfile'));
    expect(JSON.parse(cmd![1])).toEqual(['node', ...command]);
    expect(read('Dockerfile')).toMatch(/^RUN npm run build$/m);
    expect((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start).toBe(`exec node ${command.join(' ')}`);
    // Built first by prestart, and the shell execs node: a signal to npm reaches the server (test/npm-start.test.ts).
    expect((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.prestart).toBe('npm run build');
  });

  it('starts each service after what it needs, and only waits for health where there is a healthcheck', () => {
    const needs = (name: string) => Object.keys(services[name].depends_on ?? {}).sort();
    for (const name of apiNames) expect(needs(name)).toEqual(expect.arrayContaining(['postgres', 'redis']));
    expect(needs('nginx')).toEqual(apiNames);
    expect(needs('prometheus')).toEqual(apiNames);
    expect(needs('grafana')).toEqual(['prometheus']);
    expect(needs('k6')).toEqual(['nginx']);
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        if (condition === 'service_healthy') expect(services[dep].healthcheck, `${dep} has a healthcheck`).toBeDefined();
      }
    }
  });

  it('mounts only files and folders that exist in the repository', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const source of bindMounts(s).keys()) expect(existsSync(new URL(source, root)), `${name} mounts ./${source}`).toBe(true);
    }
  });

  it('runs a k6 script of load/k6 against nginx over loopback, as the scripts require', () => {
    const k6 = services.k6;
    expect(k6.network_mode).toBe('service:nginx');
    expect(bindMounts(k6).get('load')).toBe('/load');
    const command = (k6.command as string[]).map((part) => interpolate(part));
    expect(command[0]).toBe('run');
    const script = command[1].replace(/^\/load\//, 'load/');
    expect(existsSync(new URL(script, root)), script).toBe(true);
    expect(k6.environment?.BASE_URL).toMatch(/^http:\/\/127\.0\.0\.1:80$/);
    // The scripts' own check (load/k6/lib/env.ts) accepts only loopback addresses.
    expect(read('load/k6/lib/env.ts')).toContain('127');
    expect(read('ops/nginx/flash-sale.conf')).toMatch(/^\s*listen 80;/m);
  });
});

describe('nginx', () => {
  const conf = read(mountedFile('nginx', '/etc/nginx/conf.d/default.conf'));
  const directives = conf.replace(/#.*$/gm, '');

  it('balances over both API instances on their port, without stickiness', () => {
    const upstream = /upstream\s+(\w+)\s*\{([^}]*)\}/.exec(directives);
    expect(upstream).not.toBeNull();
    const servers = [...upstream![2].matchAll(/^\s*server\s+([^\s;]+)/gm)].map((m) => m[1]).sort();
    expect(servers).toEqual(apiNames.map((n) => `${n}:4000`));
    expect(directives).not.toMatch(/\b(ip_hash|hash\s|sticky)\b/);
    expect(directives).toMatch(new RegExp(`proxy_pass\\s+http://${upstream![1]};`));
  });

  it('passes WebSocket upgrades and does not buffer SSE', () => {
    expect(directives).toMatch(/proxy_http_version\s+1\.1;/);
    expect(directives).toMatch(/proxy_set_header\s+Upgrade\s+\$http_upgrade;/);
    expect(directives).toMatch(/proxy_set_header\s+Connection\s+\$connection_upgrade;/);
    expect(directives).toMatch(/map\s+\$http_upgrade\s+\$connection_upgrade\s*\{[^}]*default\s+upgrade;/);
    expect(directives).toMatch(/proxy_buffering\s+off;/);
    expect(directives).toMatch(/proxy_read_timeout\s+(\d+h|\d{3,}s?);/);
  });

  it('forwards the client address and a request id, and keeps /metrics off the public side', () => {
    expect(directives).toMatch(/proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;/);
    expect(directives).toMatch(/proxy_set_header\s+X-Request-Id\s+\$\w+;/);
    expect(directives).toMatch(/location\s*=\s*\/metrics\s*\{\s*return 404;/);
    expect(services.nginx.healthcheck?.test.join(' ')).toContain('/nginx-health');
    expect(directives).toMatch(/location\s*=\s*\/nginx-health/);
  });
});

describe('Prometheus', () => {
  const prometheus = parseYaml(read(mountedFile('prometheus', '/etc/prometheus/prometheus.yml'))) as {
    scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
  };

  it('scrapes every API instance directly at /metrics on the metrics port it listens on', () => {
    const job = prometheus.scrape_configs.find((j) => j.job_name === 'flash-sale-api');
    expect(job).toBeDefined();
    expect(job!.metrics_path ?? '/metrics').toBe('/metrics');
    const targets = job!.static_configs.flatMap((c) => c.targets).sort();
    // On METRICS_PORT: in production the API port does not serve /metrics without METRICS_TOKEN.
    expect(targets).toEqual(apiNames.map((n) => `${n}:${services[n].environment?.METRICS_PORT}`));
  });
});

describe('Grafana', () => {
  const datasources = parseYaml(read('ops/grafana/provisioning/datasources/prometheus.yml')) as { datasources: { uid: string; type: string; url: string }[] };
  const providers = parseYaml(read('ops/grafana/provisioning/dashboards/flash-sale.yml')) as { providers: { options: { path: string } }[] };
  const dashboard = JSON.parse(read('ops/grafana/dashboards/flash-sale.json')) as {
    uid: string;
    panels: { title: string; datasource: { uid: string }; targets: { expr: string; datasource: { uid: string } }[] }[];
  };

  it('provisions the Prometheus datasource and the dashboards folder that compose mounts', () => {
    expect(mountedFile('grafana', '/etc/grafana/provisioning')).toBe('ops/grafana/provisioning');
    const [ds] = datasources.datasources;
    expect(ds).toMatchObject({ type: 'prometheus', url: `http://prometheus:${[...published(services.prometheus).keys()][0]}` });
    const folder = providers.providers[0].options.path;
    expect(mountedFile('grafana', folder)).toBe('ops/grafana/dashboards');
    expect(services.grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(`${folder}/flash-sale.json`);
    for (const panel of dashboard.panels) {
      expect(panel.datasource.uid).toBe(ds.uid);
      for (const target of panel.targets) expect(target.datasource.uid).toBe(ds.uid);
    }
  });

  it('has the panels operators look at first', () => {
    const titles = dashboard.panels.map((p) => p.title.toLowerCase());
    for (const wanted of ['outcomes by code', 'latency p95', 'available stock', 'subscriptions', 'drift']) {
      expect(titles.some((t) => t.includes(wanted)), wanted).toBe(true);
    }
    const ids = dashboard.panels.map((p) => (p as unknown as { id: number }).id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('reads metric names out of PromQL the way the check below relies on', () => {
    expect(metricNamesIn('histogram_quantile(0.95, sum by (le, operationName) (rate(graphql_yoga_http_duration_bucket{job="x"}[$__rate_interval])))')).toEqual(['graphql_yoga_http_duration_bucket']);
    expect(metricNamesIn('sum(a_total) / ignoring (x) group_left b_units + 1e3 > bool 0')).toEqual(['a_total', 'b_units']);
  });

  describe('queries', () => {
    let t: TestServer;
    beforeAll(async () => {
      t = await startTestServer('ops-files');
    });
    afterAll(() => t?.close());

    it('name only metrics the server exports', async () => {
      const res = await fetch(`${t.app.url}/metrics`);
      const families = metricFamilies(await res.text());
      const used = dashboard.panels.flatMap((p) => p.targets.flatMap((target) => metricNamesIn(target.expr)));
      expect(used.length).toBeGreaterThan(10);
      const missing = [...new Set(used)].filter((name) => !families.has(name));
      expect(missing).toEqual([]);
    });
  });
});
