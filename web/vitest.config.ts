// `npm run test:unit`: the page's unit tests (src/**/*.test.ts) in Node,
// no browser. The end-to-end tests (e2e/, `npm run test:e2e`) drive
// Chromium instead.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
