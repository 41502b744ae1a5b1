import type { Viewer } from '../services/auth.js';
import type { Services } from '../services/index.js';
import type { Loaders } from './loaders.js';

export interface Context {
  viewer: Viewer | null;
  /** Set when a token was sent but refused: auth-only fields answer UNAUTHENTICATED with it. */
  authError: string | null;
  services: Services;
  loaders: Loaders;
}
