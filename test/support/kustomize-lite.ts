import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * Just enough of kustomize to check our manifests without a cluster or a kustomize binary:
 * resources (files and directories), components, strategic-merge patches (targeted by kind and
 * name; a patch that names nothing is an error, as in kustomize), images, namespace and
 * secretGenerator (without the content-hash suffix, which kustomize also writes into every
 * reference). Anything else in a kustomization is refused, so the real build cannot silently
 * differ from this one.
 */
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };

export interface Build {
  objects: K8sObject[];
  /** Every file the build read, absolute. */
  files: Set<string>;
}

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'components', 'patches', 'images', 'namespace', 'secretGenerator', 'configurations']);
const CLUSTER_SCOPED = new Set(['Namespace']);

export function readYamlDocs(file: string): any[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
  return docs.map((d) => d.toJSON()).filter((d) => d != null);
}

export function build(dir: string, opts: { components?: string[] } = {}): Build {
  const files = new Set<string>();
  const objects = buildDir(resolve(dir), files, opts.components ?? []);
  return { objects, files };
}

function buildDir(dir: string, files: Set<string>, extraComponents: string[]): K8sObject[] {
  const file = join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new Error(`${dir}: no kustomization.yaml`);
  files.add(file);
  const k = readYamlDocs(file)[0];
  for (const key of Object.keys(k)) if (!KNOWN_FIELDS.has(key)) throw new Error(`${file}: kustomize-lite does not handle "${key}"`);

  const objects: K8sObject[] = [];
  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry);
    if (!existsSync(path)) throw new Error(`${file}: resource ${entry} does not exist`);
    if (statSync(path).isDirectory()) objects.push(...buildDir(path, files, []));
    else {
      files.add(path);
      objects.push(...readYamlDocs(path));
    }
  }
  for (const g of k.secretGenerator ?? []) objects.push(generateSecret(dir, g, files));
  for (const entry of [...(k.components ?? []), ...extraComponents.map((c) => relative(dir, resolve(c)))]) {
    const path = resolve(dir, entry);
    if (!existsSync(join(path, 'kustomization.yaml'))) throw new Error(`${file}: component ${entry} does not exist`);
    const c = readYamlDocs(join(path, 'kustomization.yaml'))[0];
    if (c.kind !== 'Component') throw new Error(`${entry} is not a kustomize Component`);
    for (const conf of c.configurations ?? []) {
      if (!existsSync(resolve(path, conf))) throw new Error(`${entry}: configuration ${conf} does not exist`);
      files.add(resolve(path, conf));
    }
    objects.push(...buildDir(path, files, []));
  }
  for (const p of k.patches ?? []) {
    if (!p.path || p.target) throw new Error(`${file}: only strategic-merge patches by path are handled`);
    const path = resolve(dir, p.path);
    if (!existsSync(path)) throw new Error(`${file}: patch ${p.path} does not exist`);
    files.add(path);
    for (const patch of readYamlDocs(path)) {
      const i = objects.findIndex((o) => o.kind === patch.kind && o.apiVersion === patch.apiVersion && o.metadata.name === patch.metadata?.name);
      if (i < 0) throw new Error(`${file}: patch ${p.path} targets ${patch.kind}/${patch.metadata?.name}, which the build does not have`);
      objects[i] = strategicMerge(objects[i], patch);
    }
  }
  for (const img of k.images ?? []) {
    for (const c of containersOf(objects)) {
      const [name] = splitImage(c.image);
      if (name === img.name) c.image = `${img.newName ?? name}:${img.newTag ?? splitImage(c.image)[1]}`;
    }
  }
  if (k.namespace) for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
  return objects;
}

function splitImage(image: string): [string, string] {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, 'latest'];
}

function containersOf(objects: K8sObject[]): any[] {
  return objects.flatMap((o) => o.spec?.template?.spec?.containers ?? []);
}

function generateSecret(dir: string, g: { name: string; envs?: string[]; literals?: string[] }, files: Set<string>): K8sObject {
  const lines = [...(g.literals ?? [])];
  for (const env of g.envs ?? []) {
    const path = resolve(dir, env);
    if (!existsSync(path)) throw new Error(`secretGenerator ${g.name}: ${env} does not exist`);
    files.add(path);
    lines.push(...readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#')));
  }
  const data: Record<string, string> = {};
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq < 1) throw new Error(`secretGenerator ${g.name}: "${line}" is not KEY=VALUE`);
    data[line.slice(0, eq)] = Buffer.from(line.slice(eq + 1)).toString('base64');
  }
  return { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: g.name }, data };
}

/** The list keys kubectl's strategic merge uses for the lists our manifests patch. */
const MERGE_KEYS: Record<string, string> = { containers: 'name', initContainers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath' };

export function strategicMerge(base: any, patch: any, key?: string): any {
  if (Array.isArray(base) && Array.isArray(patch) && key && MERGE_KEYS[key]) {
    const id = MERGE_KEYS[key];
    const out = base.map((b) => ({ ...b }));
    for (const p of patch) {
      const i = out.findIndex((b) => b[id] === p[id]);
      if (i < 0) out.push(p);
      else out[i] = strategicMerge(out[i], p);
    }
    return out;
  }
  if (isPlainObject(base) && isPlainObject(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = k in base ? strategicMerge(base[k], v, k) : v;
    }
    return out;
  }
  return patch;
}

function isPlainObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
