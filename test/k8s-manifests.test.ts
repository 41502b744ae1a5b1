import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { build, readYamlDocs, type K8sObject } from './support/kustomize-lite.js';
import { startTestServer, type TestServer } from './support/harness.js';

// Issue 20 (3): the Kubernetes manifests, checked without a cluster. Every object of the base, the
// example overlay and the optional ServiceMonitor component is validated against its schema
// (kubernetes-models, generated from the Kubernetes OpenAPI), and the references a typo or a
// renamed setting would break are checked against the code itself. The last block breaks each
// reference on purpose and expects the checks to say so.

const K8S = resolve('deploy/k8s');
const BASE = join(K8S, 'base');
const OVERLAY = join(K8S, 'overlays/example');
const SERVICE_MONITOR = join(K8S, 'components/service-monitor');
const ADAPTER_VALUES = join(K8S, 'prometheus-adapter/values.yaml');

/** Closing after the HTTP drain: ledger outbox drain, Redis and PostgreSQL quit (src/app.ts stop()). */
const CLOSING_SECONDS = 4;

const SCHEMAS: Record<string, (o: any) => void> = {
  'v1/Namespace': (o) => new Namespace(o).validate(),
  'v1/ConfigMap': (o) => new ConfigMap(o).validate(),
  'v1/Secret': (o) => new Secret(o).validate(),
  'v1/Service': (o) => new Service(o).validate(),
  'apps/v1/Deployment': (o) => new Deployment(o).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (o) => new HorizontalPodAutoscaler(o).validate(),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o).validate(),
  'monitoring.coreos.com/v1/ServiceMonitor': validateServiceMonitor,
};

/** The part of the Prometheus Operator's ServiceMonitor CRD we use (a CRD: not in kubernetes-models). */
function validateServiceMonitor(o: any): void {
  const fail = (m: string) => { throw new Error(`ServiceMonitor ${o.metadata?.name}: ${m}`); };
  const allowed = (obj: object, keys: string[], where: string) => {
    for (const k of Object.keys(obj)) if (!keys.includes(k)) fail(`unknown field ${where}.${k}`);
  };
  allowed(o, ['apiVersion', 'kind', 'metadata', 'spec'], '');
  if (typeof o.metadata?.name !== 'string') fail('metadata.name is required');
  allowed(o.spec ?? fail('spec is required'), ['selector', 'endpoints', 'namespaceSelector', 'jobLabel'], 'spec');
  if (typeof o.spec.selector?.matchLabels !== 'object') fail('spec.selector.matchLabels is required');
  if (!Array.isArray(o.spec.endpoints) || o.spec.endpoints.length === 0) fail('spec.endpoints must be a non-empty list');
  for (const e of o.spec.endpoints) {
    allowed(e, ['port', 'path', 'interval', 'scrapeTimeout', 'scheme', 'authorization'], 'spec.endpoints[]');
    if (typeof e.port !== 'string') fail('endpoints[].port must be a port name');
    if (e.interval !== undefined && !/^\d+(ms|s|m)$/.test(e.interval)) fail(`endpoints[].interval ${e.interval} is not a duration`);
    if (e.authorization) {
      if (e.authorization.type !== 'Bearer') fail('authorization.type must be Bearer');
      const c = e.authorization.credentials;
      if (typeof c?.name !== 'string' || typeof c?.key !== 'string') fail('authorization.credentials needs name and key');
    }
  }
}

function validate(o: K8sObject): void {
  const schema = SCHEMAS[`${o.apiVersion}/${o.kind}`];
  if (!schema) throw new Error(`no schema for ${o.apiVersion} ${o.kind} (${o.metadata?.name})`);
  schema(o);
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]));
}

const byKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
const decode = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Every metric name the app registers (`name: 'flashsale_…'` in src/). */
function exportedMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const file of walk(resolve('src')).filter((f) => f.endsWith('.ts'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/name: '(flashsale_[a-z0-9_]+)'/g)) names.add(m[1]);
  }
  return names;
}

/** The environment the API container gets: ConfigMaps by envFrom, then env (values and secretKeyRefs). */
function containerEnv(objects: K8sObject[], container: any): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const cm = byKind(objects, 'ConfigMap').find((c) => c.metadata.name === from.configMapRef?.name);
    Object.assign(env, cm?.data ?? {});
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    const ref = e.valueFrom?.secretKeyRef;
    const secret = ref && byKind(objects, 'Secret').find((s) => s.metadata.name === ref.name);
    if (secret?.data?.[ref.key] !== undefined) env[e.name] = decode(secret.data[ref.key]);
  }
  return env;
}

/**
 * Everything a broken reference would break, as a list of problems (empty when all is well).
 * Checked on a build; the test below also feeds it broken builds.
 */
function problems(objects: K8sObject[], metricNames: Set<string>, adapterValues: any): string[] {
  const out: string[] = [];
  const deployments = byKind(objects, 'Deployment');
  if (deployments.length !== 1) return [`expected one Deployment, found ${deployments.length}`];
  const deployment = deployments[0];
  const pod = deployment.spec.template;
  const api = pod.spec.containers.find((c: any) => c.name === 'api');
  if (!api) return ['the Deployment has no container "api"'];
  if (!matches(deployment.spec.selector.matchLabels, pod.metadata.labels)) out.push('Deployment selector does not match its pod labels');

  // References to ConfigMaps and Secrets.
  for (const from of api.envFrom ?? []) {
    if (!byKind(objects, 'ConfigMap').some((c) => c.metadata.name === from.configMapRef?.name)) out.push(`envFrom names ConfigMap ${from.configMapRef?.name}, which is missing`);
  }
  for (const e of api.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (!ref) continue;
    const secret = byKind(objects, 'Secret').find((s) => s.metadata.name === ref.name);
    if (!secret) out.push(`env ${e.name} names Secret ${ref.name}, which is missing`);
    else if (secret.data?.[ref.key] === undefined && !ref.optional) out.push(`env ${e.name}: Secret ${ref.name} has no key ${ref.key}`);
  }

  // The environment must be one the API starts with, every variable a setting it reads.
  const env = containerEnv(objects, api);
  let config: ReturnType<typeof parseConfig> | null = null;
  try {
    config = parseConfig(env);
  } catch (err) {
    out.push(`the API refuses the manifests' environment: ${(err as Error).message}`);
  }
  if (config) {
    for (const name of Object.keys(env)) {
      // zod drops keys it does not know: a variable missing from the parsed config is read by nobody.
      if ((config as Record<string, unknown>)[name] === undefined) out.push(`env ${name} is not a setting of src/config.ts`);
    }
    if (['127.0.0.1', 'localhost', '::1'].includes(config.HOST)) out.push(`HOST ${config.HOST}: probes and the Service cannot reach a loopback listener`);
    const portOf = (p: string | number) => (typeof p === 'number' ? p : api.ports?.find((x: any) => x.name === p)?.containerPort);
    if (portOf('http') !== config.PORT) out.push(`container port http ${portOf('http')} is not PORT ${config.PORT}`);
    if (portOf('metrics') !== config.METRICS_PORT) out.push(`container port metrics ${portOf('metrics')} is not METRICS_PORT ${config.METRICS_PORT}`);
    for (const [probe, path] of [['readinessProbe', '/ready'], ['livenessProbe', '/health'], ['startupProbe', '/health']] as const) {
      const get = api[probe]?.httpGet;
      if (!get) out.push(`${probe} is missing`);
      else {
        if (get.path !== path) out.push(`${probe} asks ${get.path}, expected ${path}`);
        if (portOf(get.port) !== config.PORT) out.push(`${probe} port ${get.port} is not the API's PORT ${config.PORT}`);
      }
    }
    // Stop: preStop, then SIGTERM: WebSocket grace, HTTP grace (SHUTDOWN_TIMEOUT_MS each), closing.
    const preStop = api.lifecycle?.preStop;
    const sleep = preStop?.sleep?.seconds ?? (preStop?.exec?.command?.[0] === 'sleep' ? Number(preStop.exec.command[1]) : NaN);
    if (!(sleep >= 1)) out.push('preStop must sleep while endpoints drop the pod');
    const grace = pod.spec.terminationGracePeriodSeconds ?? 30;
    const needed = sleep + (2 * config.SHUTDOWN_TIMEOUT_MS) / 1000 + CLOSING_SECONDS;
    if (!(needed <= grace)) out.push(`terminationGracePeriodSeconds ${grace} < preStop ${sleep} s + 2 × SHUTDOWN_TIMEOUT_MS + ${CLOSING_SECONDS} s closing = ${needed} s`);

    // DATABASE_URL and REDIS_URL name the ExternalName Services, on their ports.
    for (const [name, url] of [['DATABASE_URL', config.DATABASE_URL], ['REDIS_URL', config.REDIS_URL]] as const) {
      const u = new URL(url);
      const svc = byKind(objects, 'Service').find((s) => s.metadata.name === u.hostname);
      if (!svc || svc.spec.type !== 'ExternalName') out.push(`${name} host ${u.hostname} is not an ExternalName Service of the build`);
      else if (!svc.spec.ports?.some((p: any) => String(p.port) === (u.port || (name === 'REDIS_URL' ? '6379' : '5432')))) out.push(`${name} port ${u.port} is not a port of Service ${u.hostname}`);
    }
  }
  for (const r of [api.resources?.requests, api.resources?.limits]) {
    if (!r?.cpu || !r?.memory) out.push('the API container needs cpu and memory requests and limits');
  }

  // Service, HPA, PDB, ServiceMonitor all find the pods.
  const services = byKind(objects, 'Service').filter((s) => s.spec.type !== 'ExternalName');
  if (services.length === 0) out.push('no Service for the API');
  for (const svc of services) {
    if (!matches(svc.spec.selector ?? {}, pod.metadata.labels)) out.push(`Service ${svc.metadata.name} selects no API pod`);
    for (const p of svc.spec.ports) {
      if (typeof p.targetPort === 'string' && !api.ports?.some((x: any) => x.name === p.targetPort)) out.push(`Service port ${p.name} targets ${p.targetPort}, not a container port`);
    }
  }
  const hpas = byKind(objects, 'HorizontalPodAutoscaler');
  if (hpas.length !== 1) out.push(`expected one HorizontalPodAutoscaler, found ${hpas.length}`);
  for (const hpa of hpas) {
    const t = hpa.spec.scaleTargetRef;
    if (t.kind !== 'Deployment' || t.name !== deployment.metadata.name || t.apiVersion !== 'apps/v1') out.push(`HPA targets ${t.apiVersion} ${t.kind}/${t.name}, not the Deployment`);
    if (!hpa.spec.metrics.some((m: any) => m.type === 'Resource' && m.resource.name === 'cpu')) out.push('HPA does not scale on CPU');
    const custom = hpa.spec.metrics.filter((m: any) => m.type === 'Pods').map((m: any) => m.pods.metric.name);
    if (custom.length === 0) out.push('HPA has no Pods metric');
    for (const name of custom) {
      if (!metricNames.has(name)) out.push(`HPA metric ${name} is not exported by the app`);
      const rule = adapterValues.rules.custom.find((r: any) => r.name.as === name);
      if (!rule) out.push(`prometheus-adapter serves no metric ${name}`);
      else if (!rule.seriesQuery.startsWith(`${name}{`)) out.push(`prometheus-adapter rule for ${name} reads ${rule.seriesQuery}`);
    }
    if (hpa.spec.minReplicas < 2) out.push('HPA minReplicas below 2 leaves no pod during a restart');
  }
  const pdbs = byKind(objects, 'PodDisruptionBudget');
  if (pdbs.length !== 1) out.push(`expected one PodDisruptionBudget, found ${pdbs.length}`);
  for (const pdb of pdbs) if (!matches(pdb.spec.selector.matchLabels, pod.metadata.labels)) out.push('PodDisruptionBudget selects no API pod');
  for (const sm of byKind(objects, 'ServiceMonitor')) {
    const svc = services.find((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    if (!svc) out.push('ServiceMonitor selects no Service');
    for (const e of sm.spec.endpoints) {
      const port = svc?.spec.ports.find((p: any) => p.name === e.port);
      if (svc && !port) out.push(`ServiceMonitor scrapes port ${e.port}, which Service ${svc.metadata.name} lacks`);
      else if (port && port.targetPort !== 'metrics') out.push(`ServiceMonitor port ${e.port} is not the API's metrics port`);
      const cred = e.authorization?.credentials;
      const secret = cred && byKind(objects, 'Secret').find((s) => s.metadata.name === cred.name);
      if (cred && secret?.data?.[cred.key] === undefined) out.push(`ServiceMonitor token ${cred.name}/${cred.key} is not in a Secret`);
    }
  }
  return out;
}

const metricNames = exportedMetricNames();
const adapterValues = readYamlDocs(ADAPTER_VALUES)[0];

describe('the manifests under deploy/k8s', () => {
  it('every YAML file parses, and each is read by a build or is the prometheus-adapter values', () => {
    const builds = [build(OVERLAY), build(OVERLAY, { components: [SERVICE_MONITOR] })];
    const read = new Set(builds.flatMap((b) => [...b.files]));
    const files = walk(K8S).filter((f) => /\.(ya?ml|env)$/.test(f));
    for (const f of files.filter((f) => /\.ya?ml$/.test(f))) expect(() => readYamlDocs(f), f).not.toThrow();
    expect(files.filter((f) => !read.has(f) && f !== ADAPTER_VALUES)).toEqual([]);
  });

  it('every object of the base, the overlay and the component validates against its schema', () => {
    const objects = [...build(BASE).objects, ...build(OVERLAY, { components: [SERVICE_MONITOR] }).objects];
    expect(objects.length).toBeGreaterThan(10);
    for (const o of objects) expect(() => validate(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
    // The validator does catch a wrong shape.
    const broken = structuredClone(byKind(objects, 'Deployment')[0]);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'http';
    expect(() => validate(broken)).toThrow(/containerPort/);
    expect(() => validate({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'x' }, spec: { selector: { matchLabels: {} }, endpoints: [{ prot: 'metrics' }] } })).toThrow(/unknown field/);
  });

  it('the example overlay builds to a consistent installation', () => {
    const { objects } = build(OVERLAY);
    expect(problems(objects, metricNames, adapterValues)).toEqual([]);
    expect(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'flashsale')).toBe(true);
    expect(byKind(objects, 'Deployment')[0].spec.template.spec.containers[0].image).toBe('registry.example.com/flashsale-api:1.0.0');
    // The overlay's patches took: they target objects of the base (the build throws otherwise).
    expect(byKind(objects, 'ConfigMap')[0].data.DATABASE_POOL_SIZE).toBe('15');
    expect(byKind(objects, 'Deployment')[0].spec.template.spec.containers[0].resources.limits.memory).toBe('1Gi');
  });

  it('with the ServiceMonitor component too', () => {
    const { objects } = build(OVERLAY, { components: [SERVICE_MONITOR] });
    expect(byKind(objects, 'ServiceMonitor')).toHaveLength(1);
    expect(problems(objects, metricNames, adapterValues)).toEqual([]);
  });

  it('a patch naming an object the base lacks, or a missing resource, fails the build', () => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-overlay-'));
    try {
      const overlay = (extra: string) => writeFileSync(join(dir, 'kustomization.yaml'), `resources:\n  - ${BASE}\n${extra}`);
      writeFileSync(join(dir, 'patch.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: flashsale\nspec:\n  replicas: 2\n');
      overlay('patches:\n  - path: patch.yaml\n');
      expect(() => build(dir)).toThrow(/targets Deployment\/flashsale, which the build does not have/);
      overlay('  - missing.yaml\n');
      expect(() => build(dir)).toThrow(/resource missing.yaml does not exist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the checks catch each broken reference', () => {
  const base = build(OVERLAY, { components: [SERVICE_MONITOR] }).objects;
  const deploymentOf = (o: K8sObject[]) => byKind(o, 'Deployment')[0];
  const apiOf = (o: K8sObject[]) => deploymentOf(o).spec.template.spec.containers[0];
  const configOf = (o: K8sObject[]) => byKind(o, 'ConfigMap')[0].data;
  const cases: [string, (o: K8sObject[]) => void, RegExp][] = [
    ['readiness path', (o) => { apiOf(o).readinessProbe.httpGet.path = '/readyz'; }, /readinessProbe asks \/readyz/],
    ['liveness port', (o) => { apiOf(o).livenessProbe.httpGet.port = 'metrics'; }, /livenessProbe port metrics/],
    ['PORT vs container port', (o) => { configOf(o).PORT = '8080'; }, /container port http 4000 is not PORT 8080/],
    ['loopback HOST', (o) => { delete configOf(o).HOST; }, /HOST 127\.0\.0\.1/],
    ['unknown setting', (o) => { configOf(o).SHUTDOWN_TIMEOUT = '8000'; }, /env SHUTDOWN_TIMEOUT is not a setting/],
    ['invalid setting', (o) => { configOf(o).SHUTDOWN_TIMEOUT_MS = 'soon'; }, /refuses the manifests' environment/],
    ['secret key', (o) => { apiOf(o).env.find((e: any) => e.name === 'JWT_SECRET').valueFrom.secretKeyRef.key = 'JWT'; }, /Secret flashsale-secrets has no key JWT/],
    ['secret name', (o) => { byKind(o, 'Secret')[0].metadata.name = 'other'; }, /names Secret flashsale-secrets, which is missing/],
    ['Service selector', (o) => { byKind(o, 'Service').find((s) => s.metadata.name === 'flashsale-api')!.spec.selector = { app: 'api' }; }, /Service flashsale-api selects no API pod/],
    ['pod labels', (o) => { deploymentOf(o).spec.template.metadata.labels = { other: 'x' }; }, /Deployment selector does not match/],
    ['HPA target', (o) => { byKind(o, 'HorizontalPodAutoscaler')[0].spec.scaleTargetRef.name = 'flashsale'; }, /HPA targets apps\/v1 Deployment\/flashsale/],
    ['HPA metric', (o) => { byKind(o, 'HorizontalPodAutoscaler')[0].spec.metrics[1].pods.metric.name = 'flashsale_inflight'; }, /flashsale_inflight is not exported/],
    ['PDB selector', (o) => { byKind(o, 'PodDisruptionBudget')[0].spec.selector.matchLabels = { app: 'x' }; }, /PodDisruptionBudget selects no API pod/],
    ['grace too short', (o) => { deploymentOf(o).spec.template.spec.terminationGracePeriodSeconds = 20; }, /terminationGracePeriodSeconds 20 </],
    ['drain too long', (o) => { configOf(o).SHUTDOWN_TIMEOUT_MS = '15000'; }, /terminationGracePeriodSeconds 30 </],
    ['no preStop', (o) => { delete apiOf(o).lifecycle; }, /preStop must sleep/],
    ['external service', (o) => { byKind(o, 'Service').find((s) => s.metadata.name === 'flashsale-redis')!.metadata.name = 'redis'; }, /REDIS_URL host flashsale-redis is not an ExternalName/],
    ['ServiceMonitor port', (o) => { byKind(o, 'ServiceMonitor')[0].spec.endpoints[0].port = 'prom'; }, /scrapes port prom/],
  ];
  for (const [name, breakIt, expected] of cases) {
    it(name, () => {
      const objects = structuredClone(base);
      breakIt(objects);
      expect(problems(objects, metricNames, adapterValues).join('\n')).toMatch(expected);
    });
  }
  it('a renamed adapter rule', () => {
    const values = structuredClone(adapterValues);
    values.rules.custom[0].name.as = 'in_flight';
    expect(problems(base, metricNames, values).join('\n')).toMatch(/prometheus-adapter serves no metric flashsale_graphql_in_flight/);
  });
});

describe('the probe paths are the running API\'s', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('k8s-probes');
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 200 on every probe path of the Deployment and on the ServiceMonitor path', async () => {
    const { objects } = build(OVERLAY, { components: [SERVICE_MONITOR] });
    const api = byKind(objects, 'Deployment')[0].spec.template.spec.containers[0];
    const paths = [api.readinessProbe.httpGet.path, api.livenessProbe.httpGet.path, api.startupProbe.httpGet.path, byKind(objects, 'ServiceMonitor')[0].spec.endpoints[0].path];
    for (const path of new Set(paths)) {
      const res = await fetch(`${t.app.url}${path}`);
      expect(res.status, path).toBe(200);
      await res.text();
    }
    const unknown = await fetch(`${t.app.url}/readyz`);
    expect(unknown.status).not.toBe(200);
    await unknown.text();
  });
});
