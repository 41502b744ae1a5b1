// GraphQL documents shared by the tests (and mirrored by the load scripts).
export const CREATE_PRODUCT = `mutation($input: CreateProductInput!) { createProduct(input: $input) { id sku currency } }`;
export const SCHEDULE_SALE = `mutation($input: ScheduleSaleInput!) {
  scheduleSale(input: $input) { id status perUserLimit holdSeconds items { id available initialStock } } }`;
export const PURCHASE = `mutation($input: PurchaseInput!) { purchase(input: $input) {
  __typename
  ... on PurchaseSuccess { replayed order { id customerId quantity status totalCents idempotencyKey } }
  ... on Rejected { code message field available retryAfterSeconds waitlistOpen } } }`;
export const RESERVE = `mutation($input: ReserveInput!) { reserve(input: $input) {
  __typename
  ... on ReserveSuccess { replayed reservation { id status quantity expiresAt endReason } }
  ... on Rejected { code message field available retryAfterSeconds } } }`;
export const CONFIRM = `mutation($id: ID!) { confirmReservation(reservationId: $id) {
  __typename
  ... on PurchaseSuccess { replayed order { id status quantity } }
  ... on Rejected { code message } } }`;
export const RELEASE = `mutation($id: ID!) { releaseReservation(reservationId: $id) {
  __typename
  ... on ReleaseSuccess { reservation { id status endReason } }
  ... on Rejected { code message } } }`;
export const CANCEL_ORDER = `mutation($id: ID!) { cancelOrder(orderId: $id) {
  __typename
  ... on CancelOrderSuccess { order { id status } }
  ... on Rejected { code message } } }`;
export const SALE_ITEM = `query($id: ID!) { saleItem(id: $id) { id available reserved sold initialStock sale { status available } } }`;
export const SALE = `query($id: ID!) { sale(id: $id) { id status available soldOutAt items { id available reserved sold } } }`;
