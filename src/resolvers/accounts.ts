import type { Context } from '../schema/context.js';
import { badUserInput, unauthenticated } from '../services/errors.js';

export async function register(a: { email: string; password: string }, ctx: Context) {
  const outcome = await ctx.services.accounts.register(a.email, a.password);
  if (!outcome.ok) throw badUserInput(outcome.message, outcome.field);
  return outcome.session;
}

export async function login(a: { email: string; password: string }, ctx: Context) {
  const outcome = await ctx.services.accounts.login(a.email, a.password);
  // One message for an unknown email and a wrong password: the answer must not confirm an account exists.
  if (!outcome.ok) throw unauthenticated('The email or password is incorrect.');
  return outcome.session;
}
