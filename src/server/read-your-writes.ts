import { getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { DbRouter } from '../db/read-routing.js';
import type { Context } from '../schema/context.js';

/**
 * Read-your-writes for admins: after any mutation of theirs (a product, a sale, a stock change),
 * their reads go to the primary for a while (DbRouter.wrote), so the catalogue they just changed
 * shows the change even while the read replica is behind. Customers' writes are marked where they
 * happen (OrderStore: an order committed or cancelled), not per mutation: a refused purchase wrote
 * nothing and must stay one Redis round trip. A no-op without a read replica.
 */
export function readYourWrites(reads: DbRouter): Plugin<Context> {
  if (!reads.replica) return {};
  return {
    onExecute({ args }) {
      const viewer = (args.contextValue as Partial<Context>).viewer;
      if (viewer?.role !== 'admin') return;
      if (getOperationAST(args.document, args.operationName)?.operation !== 'mutation') return;
      // Before (the write may commit before its answer is sent) and after (the window counts from the end).
      return reads.wrote(viewer.id).then(() => ({ onExecuteDone: () => reads.wrote(viewer.id) }));
    },
  };
}
