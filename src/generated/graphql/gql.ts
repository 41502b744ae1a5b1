/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "mutation LoadCreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id } }": typeof types.LoadCreateProductDocument,
    "mutation LoadScheduleSale($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id } } }": typeof types.LoadScheduleSaleDocument,
    "mutation StormPurchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename ... on PurchaseSuccess { replayed order { id } } ... on Rejected { code retryAfterSeconds } } }": typeof types.StormPurchaseDocument,
    "mutation FlowReserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename ... on ReserveSuccess { reservation { id } } ... on Rejected { code } } }": typeof types.FlowReserveDocument,
    "mutation FlowConfirm($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename ... on PurchaseSuccess { order { id } } ... on Rejected { code } } }": typeof types.FlowConfirmDocument,
    "query StockRead($id: ID!) { sale(id: $id) { items { available } } }": typeof types.StockReadDocument,
    "query AuditSaleLevels($id: ID!) { sale(id: $id) { status soldOutAt items { id initialStock available reserved sold } } }": typeof types.AuditSaleLevelsDocument,
    "subscription WatchStock($saleId: ID!) { stockChanged(saleId: $saleId) { status version items { available } } }": typeof types.WatchStockDocument,
    "subscription WatchStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status } }": typeof types.WatchStatusDocument,
    "mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id sku currency } }": typeof types.CreateProductDocument,
    "mutation ScheduleSale($input: ScheduleSaleInput!) {\n  scheduleSale(input: $input) { id status perUserLimit holdSeconds items { id available initialStock } } }": typeof types.ScheduleSaleDocument,
    "mutation Purchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id customerId quantity status totalCents idempotencyKey } }\n  ... on Rejected { code message field available retryAfterSeconds waitlistOpen } } }": typeof types.PurchaseDocument,
    "mutation Reserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename\n  ... on ReserveSuccess { replayed reservation { id status quantity expiresAt endReason } }\n  ... on Rejected { code message field available retryAfterSeconds } } }": typeof types.ReserveDocument,
    "mutation ConfirmReservation($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id status quantity } }\n  ... on Rejected { code message } } }": typeof types.ConfirmReservationDocument,
    "mutation ReleaseReservation($id: ID!) { releaseReservation(reservationId: $id) {\n  __typename\n  ... on ReleaseSuccess { reservation { id status endReason } }\n  ... on Rejected { code message } } }": typeof types.ReleaseReservationDocument,
    "mutation CancelOrder($id: ID!) { cancelOrder(orderId: $id) {\n  __typename\n  ... on CancelOrderSuccess { order { id status } }\n  ... on Rejected { code message } } }": typeof types.CancelOrderDocument,
    "query SaleItemLevels($id: ID!) { saleItem(id: $id) { id available reserved sold initialStock sale { status available } } }": typeof types.SaleItemLevelsDocument,
    "query SaleLevels($id: ID!) { sale(id: $id) { id status available soldOutAt items { id available reserved sold } } }": typeof types.SaleLevelsDocument,
};
const documents: Documents = {
    "mutation LoadCreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id } }": types.LoadCreateProductDocument,
    "mutation LoadScheduleSale($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id } } }": types.LoadScheduleSaleDocument,
    "mutation StormPurchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename ... on PurchaseSuccess { replayed order { id } } ... on Rejected { code retryAfterSeconds } } }": types.StormPurchaseDocument,
    "mutation FlowReserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename ... on ReserveSuccess { reservation { id } } ... on Rejected { code } } }": types.FlowReserveDocument,
    "mutation FlowConfirm($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename ... on PurchaseSuccess { order { id } } ... on Rejected { code } } }": types.FlowConfirmDocument,
    "query StockRead($id: ID!) { sale(id: $id) { items { available } } }": types.StockReadDocument,
    "query AuditSaleLevels($id: ID!) { sale(id: $id) { status soldOutAt items { id initialStock available reserved sold } } }": types.AuditSaleLevelsDocument,
    "subscription WatchStock($saleId: ID!) { stockChanged(saleId: $saleId) { status version items { available } } }": types.WatchStockDocument,
    "subscription WatchStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status } }": types.WatchStatusDocument,
    "mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id sku currency } }": types.CreateProductDocument,
    "mutation ScheduleSale($input: ScheduleSaleInput!) {\n  scheduleSale(input: $input) { id status perUserLimit holdSeconds items { id available initialStock } } }": types.ScheduleSaleDocument,
    "mutation Purchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id customerId quantity status totalCents idempotencyKey } }\n  ... on Rejected { code message field available retryAfterSeconds waitlistOpen } } }": types.PurchaseDocument,
    "mutation Reserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename\n  ... on ReserveSuccess { replayed reservation { id status quantity expiresAt endReason } }\n  ... on Rejected { code message field available retryAfterSeconds } } }": types.ReserveDocument,
    "mutation ConfirmReservation($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id status quantity } }\n  ... on Rejected { code message } } }": types.ConfirmReservationDocument,
    "mutation ReleaseReservation($id: ID!) { releaseReservation(reservationId: $id) {\n  __typename\n  ... on ReleaseSuccess { reservation { id status endReason } }\n  ... on Rejected { code message } } }": types.ReleaseReservationDocument,
    "mutation CancelOrder($id: ID!) { cancelOrder(orderId: $id) {\n  __typename\n  ... on CancelOrderSuccess { order { id status } }\n  ... on Rejected { code message } } }": types.CancelOrderDocument,
    "query SaleItemLevels($id: ID!) { saleItem(id: $id) { id available reserved sold initialStock sale { status available } } }": types.SaleItemLevelsDocument,
    "query SaleLevels($id: ID!) { sale(id: $id) { id status available soldOutAt items { id available reserved sold } } }": types.SaleLevelsDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation LoadCreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id } }"): (typeof documents)["mutation LoadCreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation LoadScheduleSale($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id } } }"): (typeof documents)["mutation LoadScheduleSale($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation StormPurchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename ... on PurchaseSuccess { replayed order { id } } ... on Rejected { code retryAfterSeconds } } }"): (typeof documents)["mutation StormPurchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename ... on PurchaseSuccess { replayed order { id } } ... on Rejected { code retryAfterSeconds } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation FlowReserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename ... on ReserveSuccess { reservation { id } } ... on Rejected { code } } }"): (typeof documents)["mutation FlowReserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename ... on ReserveSuccess { reservation { id } } ... on Rejected { code } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation FlowConfirm($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename ... on PurchaseSuccess { order { id } } ... on Rejected { code } } }"): (typeof documents)["mutation FlowConfirm($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename ... on PurchaseSuccess { order { id } } ... on Rejected { code } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query StockRead($id: ID!) { sale(id: $id) { items { available } } }"): (typeof documents)["query StockRead($id: ID!) { sale(id: $id) { items { available } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query AuditSaleLevels($id: ID!) { sale(id: $id) { status soldOutAt items { id initialStock available reserved sold } } }"): (typeof documents)["query AuditSaleLevels($id: ID!) { sale(id: $id) { status soldOutAt items { id initialStock available reserved sold } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "subscription WatchStock($saleId: ID!) { stockChanged(saleId: $saleId) { status version items { available } } }"): (typeof documents)["subscription WatchStock($saleId: ID!) { stockChanged(saleId: $saleId) { status version items { available } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "subscription WatchStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status } }"): (typeof documents)["subscription WatchStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id sku currency } }"): (typeof documents)["mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id sku currency } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation ScheduleSale($input: ScheduleSaleInput!) {\n  scheduleSale(input: $input) { id status perUserLimit holdSeconds items { id available initialStock } } }"): (typeof documents)["mutation ScheduleSale($input: ScheduleSaleInput!) {\n  scheduleSale(input: $input) { id status perUserLimit holdSeconds items { id available initialStock } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation Purchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id customerId quantity status totalCents idempotencyKey } }\n  ... on Rejected { code message field available retryAfterSeconds waitlistOpen } } }"): (typeof documents)["mutation Purchase($input: PurchaseInput!) { purchase(input: $input) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id customerId quantity status totalCents idempotencyKey } }\n  ... on Rejected { code message field available retryAfterSeconds waitlistOpen } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation Reserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename\n  ... on ReserveSuccess { replayed reservation { id status quantity expiresAt endReason } }\n  ... on Rejected { code message field available retryAfterSeconds } } }"): (typeof documents)["mutation Reserve($input: ReserveInput!) { reserve(input: $input) {\n  __typename\n  ... on ReserveSuccess { replayed reservation { id status quantity expiresAt endReason } }\n  ... on Rejected { code message field available retryAfterSeconds } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation ConfirmReservation($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id status quantity } }\n  ... on Rejected { code message } } }"): (typeof documents)["mutation ConfirmReservation($id: ID!) { confirmReservation(reservationId: $id) {\n  __typename\n  ... on PurchaseSuccess { replayed order { id status quantity } }\n  ... on Rejected { code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation ReleaseReservation($id: ID!) { releaseReservation(reservationId: $id) {\n  __typename\n  ... on ReleaseSuccess { reservation { id status endReason } }\n  ... on Rejected { code message } } }"): (typeof documents)["mutation ReleaseReservation($id: ID!) { releaseReservation(reservationId: $id) {\n  __typename\n  ... on ReleaseSuccess { reservation { id status endReason } }\n  ... on Rejected { code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation CancelOrder($id: ID!) { cancelOrder(orderId: $id) {\n  __typename\n  ... on CancelOrderSuccess { order { id status } }\n  ... on Rejected { code message } } }"): (typeof documents)["mutation CancelOrder($id: ID!) { cancelOrder(orderId: $id) {\n  __typename\n  ... on CancelOrderSuccess { order { id status } }\n  ... on Rejected { code message } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query SaleItemLevels($id: ID!) { saleItem(id: $id) { id available reserved sold initialStock sale { status available } } }"): (typeof documents)["query SaleItemLevels($id: ID!) { saleItem(id: $id) { id available reserved sold initialStock sale { status available } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query SaleLevels($id: ID!) { sale(id: $id) { id status available soldOutAt items { id available reserved sold } } }"): (typeof documents)["query SaleLevels($id: ID!) { sale(id: $id) { id status available soldOutAt items { id available reserved sold } } }"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;