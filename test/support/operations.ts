// GraphQL documents shared by the tests and the load scripts; `npm run codegen` types them
// (src/generated/graphql).
export const CREATE_PRODUCT = /* GraphQL */ `mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id sku currency } }`;
export const SCHEDULE_SALE = /* GraphQL */ `mutation ScheduleSale($input: ScheduleSaleInput!) {
  scheduleSale(input: $input) { id status perUserLimit holdSeconds items { id available initialStock } } }`;
export const PURCHASE = /* GraphQL */ `mutation Purchase($input: PurchaseInput!) { purchase(input: $input) {
  __typename
  ... on PurchaseSuccess { replayed order { id customerId quantity status totalCents idempotencyKey } }
  ... on Rejected { code message field available retryAfterSeconds waitlistOpen } } }`;
export const RESERVE = /* GraphQL */ `mutation Reserve($input: ReserveInput!) { reserve(input: $input) {
  __typename
  ... on ReserveSuccess { replayed reservation { id status quantity expiresAt endReason } }
  ... on Rejected { code message field available retryAfterSeconds } } }`;
export const CONFIRM = /* GraphQL */ `mutation ConfirmReservation($id: ID!) { confirmReservation(reservationId: $id) {
  __typename
  ... on PurchaseSuccess { replayed order { id status quantity } }
  ... on Rejected { code message } } }`;
export const RELEASE = /* GraphQL */ `mutation ReleaseReservation($id: ID!) { releaseReservation(reservationId: $id) {
  __typename
  ... on ReleaseSuccess { reservation { id status endReason } }
  ... on Rejected { code message } } }`;
export const CANCEL_ORDER = /* GraphQL */ `mutation CancelOrder($id: ID!) { cancelOrder(orderId: $id) {
  __typename
  ... on CancelOrderSuccess { order { id status } }
  ... on Rejected { code message } } }`;
export const SALE_ITEM = /* GraphQL */ `query SaleItemLevels($id: ID!) { saleItem(id: $id) { id available reserved sold initialStock sale { status available } } }`;
export const SALE = /* GraphQL */ `query SaleLevels($id: ID!) { sale(id: $id) { id status available soldOutAt items { id available reserved sold } } }`;
