// GraphQL documents of the load scenarios; the k6 scripts carry the same text (load/k6/lib/operations.ts).
export const CREATE_PRODUCT = `mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }`;
export const SCHEDULE_SALE = `mutation($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id } } }`;
/** The storm asks for what a phone shows: success with the order id, or the rejection's code. */
export const PURCHASE = `mutation($input: PurchaseInput!) { purchase(input: $input) {
  __typename ... on PurchaseSuccess { replayed order { id } } ... on Rejected { code retryAfterSeconds } } }`;
export const RESERVE = `mutation($input: ReserveInput!) { reserve(input: $input) {
  __typename ... on ReserveSuccess { reservation { id } } ... on Rejected { code } } }`;
export const CONFIRM = `mutation($id: ID!) { confirmReservation(reservationId: $id) {
  __typename ... on PurchaseSuccess { order { id } } ... on Rejected { code } } }`;
export const SALE_AVAILABLE = `query($id: ID!) { sale(id: $id) { items { available } } }`;
export const SALE_LEVELS = `query($id: ID!) { sale(id: $id) { status soldOutAt items { id initialStock available reserved sold } } }`;
export const STOCK_CHANGED = `subscription($saleId: ID!) { stockChanged(saleId: $saleId) { status version items { available } } }`;
export const SALE_STATUS_CHANGED = `subscription($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status } }`;
