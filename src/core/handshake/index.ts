// Public API of the 55-45 handshake: the split, the price book and period statements.
export {
  CREATOR_SHARE_PERCENT,
  PLATFORM_SHARE_PERCENT,
  MAX_AMOUNT_DIGITS,
  parseAmount,
  split,
  formatMinor,
  type Split,
} from './split.ts';
export { isPeriod, assertPeriod, nextPeriod, periodOfInstant } from './period.ts';
export {
  PriceBookBody,
  parsePriceBook,
  priceInForce,
  assertPriceBookTiming,
  type PriceBook,
  type PriceBookPrice,
} from './pricebook.ts';
export {
  DEFAULT_CURRENCY,
  UsageReportBody,
  RevenueRecordBody,
  statement,
  statementToJson,
  type Statement,
  type StatementLine,
  type StatementJson,
} from './statement.ts';
