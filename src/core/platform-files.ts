// Where a data directory keeps the platform's key and configuration, and whether one is
// initialised: apart from platform.ts so that the CLI can check without loading the store.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const PLATFORM_KEY_FILE = join('keys', 'platform.key');
export const PLATFORM_CONFIG_FILE = 'platform.json';

export function isInitialised(dataDir: string): boolean {
  return existsSync(join(dataDir, PLATFORM_CONFIG_FILE));
}
