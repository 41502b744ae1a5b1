// Part of `npm run build`: copies what the code reads at run time beside the compiled modules
// (Lua scripts, persisted operations, the live page), so dist/ runs with plain `node`.
import { cpSync } from 'node:fs';

cpSync(new URL('../src/', import.meta.url), new URL('../dist/', import.meta.url), {
  recursive: true,
  filter: (path) => !path.endsWith('.ts'),
});
