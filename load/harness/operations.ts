// GraphQL documents of the load scenarios, shared with the k6 scripts. Each is named and tagged so
// `npm run codegen` types it and lists it among the persisted documents, which the scenarios send
// by id (see persisted.ts) as a production client would.
export const CREATE_PRODUCT = /* GraphQL */ `mutation LoadCreateProduct($input: CreateProductInput!) { createProduct(input: $input) { id } }`;
export const SCHEDULE_SALE = /* GraphQL */ `mutation LoadScheduleSale($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id } } }`;
/** The storm asks for what a phone shows: success with the order id, or the rejection's code. */
export const PURCHASE = /* GraphQL */ `mutation StormPurchase($input: PurchaseInput!) { purchase(input: $input) {
  __typename ... on PurchaseSuccess { replayed order { id } } ... on Rejected { code retryAfterSeconds } } }`;
export const RESERVE = /* GraphQL */ `mutation FlowReserve($input: ReserveInput!) { reserve(input: $input) {
  __typename ... on ReserveSuccess { reservation { id } } ... on Rejected { code } } }`;
export const CONFIRM = /* GraphQL */ `mutation FlowConfirm($id: ID!) { confirmReservation(reservationId: $id) {
  __typename ... on PurchaseSuccess { order { id } } ... on Rejected { code } } }`;
export const SALE_AVAILABLE = /* GraphQL */ `query StockRead($id: ID!) { sale(id: $id) { items { available } } }`;
export const SALE_LEVELS = /* GraphQL */ `query AuditSaleLevels($id: ID!) { sale(id: $id) { status soldOutAt items { id initialStock available reserved sold } } }`;
export const STOCK_CHANGED = /* GraphQL */ `subscription WatchStock($saleId: ID!) { stockChanged(saleId: $saleId) { status version items { available } } }`;
export const SALE_STATUS_CHANGED = /* GraphQL */ `subscription WatchStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status } }`;
