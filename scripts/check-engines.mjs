#!/usr/bin/env node
// Fails when an installed package's `engines.node` excludes the running Node or the
// oldest Node our own package.json admits (its `engines.node` lower bound), i.e. what
// `npm ci` reports as EBADENGINE warnings. Run after `npm ci` (CI does: .ci/run).
// Usage: node scripts/check-engines.mjs [projectDir]
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..'));

// npm's own semver (npm checks engines with it); the project's copy, if any, as a fallback.
function loadSemver() {
  const npmDirs = [];
  if (process.env.npm_execpath) npmDirs.push(path.resolve(path.dirname(process.env.npm_execpath), '..'));
  try {
    const npmBin = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
    if (npmBin) npmDirs.push(path.resolve(path.dirname(realpathSync(npmBin)), '..'));
  } catch {}
  for (const dir of npmDirs) {
    const candidate = path.join(dir, 'node_modules', 'semver', 'package.json');
    if (existsSync(candidate)) return createRequire(candidate)('./');
  }
  try {
    return createRequire(path.join(root, 'package.json'))('semver');
  } catch {
    console.error('check-engines: cannot find `semver` (neither npm\'s bundled copy nor the project\'s)');
    process.exit(2);
  }
}
const semver = loadSemver();
const opt = { includePrerelease: true }; // as npm-install-checks does

const self = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const declared = self.engines?.node;
const floor = declared ? semver.minVersion(declared)?.version : undefined;
const targets = [['running Node', process.version.slice(1)]];
if (floor && floor !== targets[0][1]) targets.push([`engines.node "${declared}" floor`, floor]);
if (declared && !semver.satisfies(process.version, declared, opt)) {
  console.error(`check-engines: running Node ${process.version} is outside package.json engines.node "${declared}"`);
  process.exitCode = 1;
}

const nodeModules = path.join(root, 'node_modules');
if (!existsSync(nodeModules)) {
  console.error(`check-engines: ${nodeModules} does not exist (run npm ci first)`);
  process.exit(2);
}

// Every package directory under node_modules, nested node_modules included.
function* packages(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.name.startsWith('.')) continue; // .bin, .package-lock.json, .cache
    const full = path.join(dir, e.name);
    if (e.name.startsWith('@')) {
      yield* packages(full);
      continue;
    }
    if (!e.isDirectory() && !e.isSymbolicLink()) continue;
    if (existsSync(path.join(full, 'package.json'))) yield full;
    yield* packages(path.join(full, 'node_modules'));
  }
}

const bad = [];
let count = 0;
for (const dir of packages(nodeModules)) {
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  } catch {
    continue;
  }
  count++;
  const range = pkg.engines?.node;
  if (typeof range !== 'string' || range.trim() === '') continue;
  const excluded = targets.filter(([, version]) => !semver.satisfies(version, range, opt));
  if (excluded.length > 0) {
    const what = excluded.map(([label, version]) => `${label} ${version}`).join(', ');
    bad.push(`${pkg.name}@${pkg.version} (${path.relative(root, dir)}) wants node "${range}": excludes ${what}`);
  }
}

if (bad.length > 0) {
  console.error(`check-engines: ${bad.length} engine mismatch(es) among ${count} installed packages:`);
  for (const line of bad) console.error(`  ${line}`);
  console.error('Pin or override (package.json "overrides") to releases whose engines include our Node.');
  process.exitCode = 1;
} else if (!process.exitCode) {
  console.log(`check-engines: ${count} installed packages accept Node ${targets.map(([, v]) => v).join(' and ')}`);
}
