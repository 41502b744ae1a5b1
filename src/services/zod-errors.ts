import type { z } from 'zod';
import { badUserInput, invalidInput, type Rejected } from './errors.js';

function describe(error: z.ZodError, root: string): { field: string; message: string } {
  const issue = error.issues[0];
  const field = [root, ...issue.path.map(String)].filter(Boolean).join('.');
  return { field, message: `${field}: ${issue.message}` };
}

/** The first problem as a GraphQL BAD_USER_INPUT error, naming the input path at fault. */
export function zodToBadInput(error: z.ZodError, root: string) {
  const { field, message } = describe(error, root);
  return badUserInput(message, field);
}

/** The first problem as a `Rejected` INVALID_INPUT value, naming the input path at fault. */
export function zodToRejected(error: z.ZodError, root: string): Rejected {
  const { field, message } = describe(error, root);
  return invalidInput(field, message);
}
