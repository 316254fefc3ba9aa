// The price book a new platform publishes at init (version 1, USD minor units). Chosen so that
// the lifecycle specification's example month prices as it says: 4 cores for 720 hours $120,
// 50,000 DNS queries $5, 500 messages and 2 GB-months of mail storage $10, 150 GB egress $15.
// An operator publishes a new version to change them; it takes effect from the next period.
export const DEFAULT_PRICES = {
  'compute.cpu_core_hours': { amount: '125', per: '30' },
  'compute.memory_gb_hours': { amount: '1', per: '10' },
  'compute.io_operations': { amount: '1', per: '100000' },
  // The same rates in the units the compute meter reports (src/compute/metering): 125 per 30
  // core-hours is 125 per 108,000 CPU seconds; 1 per 10 GB-hours is 1 per 10,240 MB-hours.
  'compute.cpu_seconds': { amount: '125', per: '108000' },
  'compute.memory_mb_hours': { amount: '1', per: '10240' },
  'compute.io_bytes': { amount: '1', per: '10000000000' },
  'dns.queries': { amount: '10', per: '1000' },
  'mail.messages': { amount: '1', per: '1' },
  // The mail service's bytes in and out (src/mail/smtp/service.ts): recorded and bounded by the
  // link's capacity, priced through the messages (as the specification's example month is).
  'mail.bytes_in': { amount: '0', per: '1' },
  'mail.bytes_out': { amount: '0', per: '1' },
  'mail.storage_gb_months': { amount: '250', per: '1' },
  // The same rate in the unit the IMAP service samples: a GB-month of 30 days is 1,024 x 720 MB-hours.
  'mail.storage_mb_hours': { amount: '250', per: '737280' },
  'network.bandwidth_gb': { amount: '10', per: '1' },
  // Metered by the gateway from HAProxy's byte counters: ingress free, egress at the GB rate.
  'network.bytes_in': { amount: '0', per: '1' },
  'network.bytes_out': { amount: '10', per: '1000000000' },
} as const;
