import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { unauthenticated } from '../services/errors.js';
import { assertId } from '../services/validation.js';

export function joinQueue(saleId: string, ctx: Context) {
  return ctx.services.waitingRoom.join(ctx.viewer!, saleId);
}

export function queueTicket(v: Viewer, saleId: string, ctx: Context) {
  assertId(saleId, 'saleId');
  return ctx.services.waitingRoom.ticket(v, saleId);
}

/** Viewer streams are refused before they open (scope-auth checks each event, too late). */
export function queueChanges(saleId: string, ctx: Context) {
  if (!ctx.viewer) throw unauthenticated(ctx.authError ?? undefined);
  assertId(saleId, 'saleId');
  return ctx.services.live.queueChanged(ctx.viewer, saleId);
}
