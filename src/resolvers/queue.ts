import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { assertId } from '../services/validation.js';

export function joinQueue(saleId: string, ctx: Context) {
  return ctx.services.waitingRoom.join(ctx.viewer!, saleId);
}

export function queueTicket(v: Viewer, saleId: string, ctx: Context) {
  assertId(saleId, 'saleId');
  return ctx.services.waitingRoom.ticket(v, saleId);
}
