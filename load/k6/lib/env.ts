// Settings every k6 script reads from `-e NAME=value` (k6 run -e BASE_URL=http://127.0.0.1:4000 …).

/** The API under test; loopback only, like the Node harness (this workplace loads nothing else). */
export const BASE_URL = (() => {
  const url = __ENV.BASE_URL || 'http://127.0.0.1:4000';
  if (!/^https?:\/\/(127(\.\d{1,3}){3}|localhost|\[::1\])(:\d+)?\/?$/.test(url)) throw new Error(`BASE_URL ${url} is not a loopback address`);
  return url.replace(/\/$/, '');
})();
export const GRAPHQL_URL = `${BASE_URL}/graphql`;
export const WS_URL = GRAPHQL_URL.replace(/^http/, 'ws');
export const JWT_SECRET = __ENV.JWT_SECRET || 'dev-secret-change-me';
/** `Origin` on every request and upgrade, as a web page's carry it; unset sends none, as an app. */
export const ORIGIN = __ENV.ORIGIN || '';

export function intEnv(name: string, fallback: number): number {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${raw}`);
  return n;
}
