import { createSourceEventStream, execute, Kind, type DocumentNode, type GraphQLError, type GraphQLSchema } from 'graphql';
import { selectsOnlyPublicFields } from '../../schema/public-fields.js';

/** Subscriptions whose events answer the same for every subscriber (their fields: PUBLIC_FIELDS). */
export const SHAREABLE_SUBSCRIPTIONS: ReadonlySet<string> = new Set(['stockChanged', 'saleStatusChanged']);

/**
 * Whether one execution of this document may be shared by every subscriber of the same event:
 * one operation, a subscription, that selects only public fields (see `selectsOnlyPublicFields`).
 * Anything else (viewer streams, a field nobody vouched for, several operations) is executed per
 * subscriber.
 */
export function isShareableSubscription(schema: GraphQLSchema, document: DocumentNode): boolean {
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  if (operations.length !== 1 || operations[0].kind !== Kind.OPERATION_DEFINITION || operations[0].operation !== 'subscription') return false;
  return selectsOnlyPublicFields(schema, document, SHAREABLE_SUBSCRIPTIONS);
}

export interface SharedOperation {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName: string | null | undefined;
  variableValues: Record<string, unknown> | null | undefined;
  /** Same document, operation and variables ⇒ same key. */
  key: string;
}

export interface SharedExecutorOptions {
  /**
   * A fresh context of an anonymous caller (no viewer, no token, empty loaders). Shared
   * executions never see any subscriber's context, so even a field wrongly listed as public
   * could only ever show what an anonymous caller sees, never another viewer's data.
   */
  anonymousContext: () => Promise<unknown>;
  /** The server's error masking, applied to each shared result as to every other result. */
  maskErrors: (errors: readonly GraphQLError[]) => GraphQLError[];
  /** Told of each execution, with its context (for a metric). */
  executed?: (context: unknown) => void;
}

/**
 * Executes each event of a shareable subscription once per distinct (document, operation,
 * variables) on this instance, however many subscribers receive that event, and serialises the
 * result once for all of them.
 *
 * Each subscriber still has its own source stream (the field's `subscribe`), so what it is sent
 * (first the current state, then only news to it) is decided per subscriber as before; only the
 * execution of an event object that several subscribers received is shared. Results are kept in
 * a WeakMap keyed by that event object, so they live exactly as long as the event itself.
 */
export class SharedExecutor {
  private readonly payloads = new WeakMap<object, Map<string, Promise<string>>>();

  constructor(private readonly o: SharedExecutorOptions) {}

  /**
   * Opens one subscriber's source stream, as graphql-js' subscribe would, with an anonymous
   * context. Null when it could not be opened (bad arguments, unknown sale…): the caller answers
   * through the regular path, which reports why.
   */
  async open(op: SharedOperation): Promise<AsyncIterableIterator<unknown> | null> {
    const source = await createSourceEventStream({
      schema: op.schema, document: op.document, operationName: op.operationName, variableValues: op.variableValues, contextValue: await this.o.anonymousContext(),
    });
    return Symbol.asyncIterator in source ? (source as AsyncIterableIterator<unknown>) : null;
  }

  /** The `next` payload for this event, as JSON: `{"data":…}`, with masked `errors` if any. */
  payloadOf(op: SharedOperation, event: unknown): Promise<string> {
    if (typeof event !== 'object' || event === null) return this.run(op, event);
    let byKey = this.payloads.get(event);
    if (!byKey) this.payloads.set(event, (byKey = new Map()));
    let payload = byKey.get(op.key);
    if (!payload) byKey.set(op.key, (payload = this.run(op, event)));
    return payload;
  }

  private async run(op: SharedOperation, event: unknown): Promise<string> {
    const contextValue = await this.o.anonymousContext();
    this.o.executed?.(contextValue);
    const { errors, ...result } = await execute({
      schema: op.schema, document: op.document, operationName: op.operationName, variableValues: op.variableValues, rootValue: event, contextValue,
    });
    // The shape graphql-ws gives a `next` payload: errors as their JSON, left out when there are none.
    return JSON.stringify(errors?.length ? { ...result, errors: this.o.maskErrors(errors).map((e) => e.toJSON()) } : result);
  }
}
