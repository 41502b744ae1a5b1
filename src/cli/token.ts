import { loadConfig } from '../config.js';
import { TokenService } from '../services/auth.js';

// Prints a bearer token: npm run token -- <subject> [--admin] [--ttl seconds]
const args = process.argv.slice(2);
const subject = args.find((a) => !a.startsWith('--'));
if (!subject || subject.length > 64) {
  console.error('usage: npm run token -- <subject (1..64 chars)> [--admin] [--ttl seconds]');
  process.exit(2);
}
const ttlIndex = args.indexOf('--ttl');
const ttl = ttlIndex >= 0 ? Number(args[ttlIndex + 1]) : 24 * 3600;
const config = loadConfig();
const { token } = await new TokenService(config.JWT_SECRET).sign(subject, args.includes('--admin') ? 'admin' : 'customer', ttl);
console.log(token);
