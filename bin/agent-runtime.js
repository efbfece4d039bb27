#!/usr/bin/env node
// Launcher: the compiled CLI lives in dist/ (built by `npm run build`, which `npm ci` runs via `prepare`).
import('../dist/cli/bin.js').catch((error) => {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/cli/bin.js')) {
    console.error('agent-runtime: not built yet. Run `npm run build` (npm ci does this through `prepare`).');
    process.exit(2);
  }
  throw error;
});
