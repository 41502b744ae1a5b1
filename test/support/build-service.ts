import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Vitest global setup: builds dist/ once before any file runs, since the tests that start the API
 * as its own process run what production runs (`node dist/main.js`), not the TypeScript sources.
 */
export default function buildService(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: fileURLToPath(new URL('../../', import.meta.url)), stdio: 'inherit' });
}
