import { loadConfig } from '../config.js';
import { TokenService } from '../services/auth.js';

// Prints a bearer token: npm run token -- <subject> [--admin] [--ttl seconds]
// The token always carries exp: --ttl defaults to, and may not exceed, JWT_MAX_LIFETIME_SECONDS
// (24 h unless configured), since the server refuses longer-lived tokens.
const args = process.argv.slice(2);
const usage = 'usage: npm run token -- <subject (1..64 chars)> [--admin] [--ttl seconds]';
const ttlIndex = args.indexOf('--ttl');
const subject = args.find((a, i) => !a.startsWith('--') && (ttlIndex < 0 || i !== ttlIndex + 1));
if (!subject || subject.length > 64) {
  console.error(usage);
  process.exit(2);
}
const config = loadConfig();
const max = config.JWT_MAX_LIFETIME_SECONDS;
const ttl = ttlIndex >= 0 ? Number(args[ttlIndex + 1]) : max;
if (!Number.isInteger(ttl) || ttl < 1 || ttl > max) {
  console.error(`--ttl must be a whole number of seconds from 1 to ${max} (JWT_MAX_LIFETIME_SECONDS): the server refuses longer-lived tokens`);
  console.error(usage);
  process.exit(2);
}
const { token } = await new TokenService(config.JWT_SECRET, undefined, {}, max).sign(subject, args.includes('--admin') ? 'admin' : 'customer', ttl);
console.log(token);
