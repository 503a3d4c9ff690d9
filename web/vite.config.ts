// Vite builds the page into dist/, which the service serves at `/`.
// `npm run dev` serves the sources with hot reload and forwards the API and
// Socket.IO to a service running on port 4000 (scripts/run).
import { defineConfig } from 'vite';

const service = process.env.MARAUDERS_MAP_URL ?? 'http://127.0.0.1:4000';

export default defineConfig({
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  server: {
    proxy: {
      '/api': service,
      '/socket.io': { target: service, ws: true },
    },
  },
});
