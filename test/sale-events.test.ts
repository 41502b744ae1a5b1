import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { ChannelHub } from '../src/services/live/channel-hub.js';
import { SaleEvents, type SaleEvent } from '../src/services/sale-events.js';
import { eventually, isolation, REDIS_URL } from './support/harness.js';

// Sale events travel between instances over Redis pub/sub. The events of one event-loop turn leave
// as one message per sale (distinct events once), and the receiving hub hands each one to its
// listeners as if it had come alone.

const { redisPrefix: prefix } = isolation('sale-events');
const log = createLogger('silent');
let publisher: Redis;
let watcher: Redis;
let hub: ChannelHub;
let events: SaleEvents;
const messages: { channel: string; message: string }[] = [];

beforeAll(async () => {
  publisher = new Redis(REDIS_URL);
  watcher = new Redis(REDIS_URL);
  events = new SaleEvents(publisher, prefix, log);
  hub = new ChannelHub((connectionName) => new Redis(REDIS_URL, { connectionName }), log);
  watcher.on('pmessage', (_pattern: string, channel: string, message: string) => messages.push({ channel, message }));
  await watcher.psubscribe(`${prefix}events:*`);
});
afterAll(async () => {
  await hub?.close();
  publisher?.disconnect();
  watcher?.disconnect();
});

describe('sale events between instances', () => {
  it('sends the events of one turn as one message per sale, each distinct event once, in order', async () => {
    const heard: SaleEvent[] = [];
    const stop = await hub.listen(events.channel('a'), (e) => heard.push(e));
    messages.length = 0;
    // Two purchases answered in the same turn, and one event of another sale.
    const sent = [
      events.orderChanged('a', 'o1', 'c1'), events.reservationChanged('a', 'r1', 'c1'), events.stockChanged('a'),
      events.orderChanged('a', 'o2', 'c2'), events.reservationChanged('a', 'r2', 'c2'), events.stockChanged('a'),
      events.saleChanged('b'),
    ];
    await Promise.all(sent);
    await eventually(async () => messages.length >= 2 && heard.length >= 5, 2000, 5);
    const expected: SaleEvent[] = [
      { type: 'order', saleId: 'a', orderId: 'o1', customerId: 'c1' },
      { type: 'reservation', saleId: 'a', reservationId: 'r1', customerId: 'c1' },
      { type: 'stock', saleId: 'a' },
      { type: 'order', saleId: 'a', orderId: 'o2', customerId: 'c2' },
      { type: 'reservation', saleId: 'a', reservationId: 'r2', customerId: 'c2' },
    ];
    expect(messages.map((m) => [m.channel, JSON.parse(m.message)])).toEqual([
      [events.channel('a'), expected],
      [events.channel('b'), { type: 'sale', saleId: 'b' }],
    ]);
    expect(heard).toEqual(expected);

    // A later turn is a message of its own; a lone event is sent as itself.
    await events.stockChanged('a');
    await eventually(async () => messages.length === 3 && heard.length === 6, 2000, 5);
    expect(JSON.parse(messages[2].message)).toEqual({ type: 'stock', saleId: 'a' });
    expect(heard[5]).toEqual({ type: 'stock', saleId: 'a' });
    stop();
  });

  it('tells this instance\'s own listeners of each event at once, before it leaves for Redis', async () => {
    const local: string[] = [];
    const own = new SaleEvents(publisher, prefix, log);
    own.onPublish((saleId) => local.push(saleId));
    messages.length = 0;
    const sent = own.stockChanged('c');
    expect(local).toEqual(['c']);
    expect(messages).toEqual([]);
    await sent;
    await eventually(async () => messages.length === 1, 2000, 5);
  });
});
