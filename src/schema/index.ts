import { builder } from './builder.js';
import './scalars.js';
import './common.js';
import './catalog.js';
import './sale.js';
import './buying.js';
import './ledger.js';
import './viewer.js';
import './tiers.js';
import './waitlist.js';
import './queue.js';
import './subscriptions.js';
import './accounts.js';

export const schema = builder.toSchema({ sortSchema: false });
