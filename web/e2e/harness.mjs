// What the end-to-end tests stand on: the real `marauders-map` binary on a
// free port with a fresh PostgreSQL database (the embedded log), and
// Debian's Chromium driven by playwright-core. Nothing is mocked.
//
// Needs (scripts/test sets them): TEST_DATABASE_URL, an admin URL of the
// private PostgreSQL; MARAUDERS_MAP_BIN, the built binary (default:
// $CARGO_TARGET_DIR/debug/marauders-map); CHROMIUM_PATH (default
// /usr/bin/chromium). TEST_LOG=1 shows the service's log.

import { spawn, execFile } from 'node:child_process';
import { randomBytes, createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const run = promisify(execFile);
const webDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
const projectRoot = resolve(webDir, '..');

export const artifactsDir = join(webDir, 'e2e', 'artifacts');

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the end-to-end tests through scripts/test`);
  return value;
}

function binaryPath() {
  if (process.env.MARAUDERS_MAP_BIN) return process.env.MARAUDERS_MAP_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(projectRoot, 'target');
  return join(target, 'debug', 'marauders-map');
}

async function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** `psql` against the admin database: from PG_BIN, else from PATH. */
async function psql(adminUrl, sql) {
  const psqlPath = process.env.PG_BIN ? join(process.env.PG_BIN, 'psql') : 'psql';
  await run(psqlPath, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', adminUrl, '-c', sql]);
}

function withDatabase(adminUrl, name) {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Starts the service on a fresh database, with `settings` added to its
 * environment (e.g. `{ ACCESS_TOKEN_LIFETIME_SECS: '4' }`). Returns its
 * address, a way to run the CLI against the same database, and `stop()`.
 */
export async function startService(settings = {}) {
  const adminUrl = required('TEST_DATABASE_URL');
  const binary = binaryPath();
  if (!existsSync(binary)) throw new Error(`${binary} is missing: cargo build --bin marauders-map first`);
  if (!existsSync(join(webDir, 'dist', 'index.html'))) throw new Error('web/dist is missing: npm run build first');

  // scripts/test drops mm_test_* databases a previous run left behind.
  const database = `mm_test_e2e_${randomBytes(6).toString('hex')}`;
  await psql(adminUrl, `CREATE DATABASE "${database}"`);
  const dataDir = mkdtempSync(join(tmpdir(), 'marauders-e2e-'));
  const port = await freePort();
  const jwtSecret = randomBytes(32).toString('hex');
  const env = {
    ...process.env,
    DATABASE_URL: withDatabase(adminUrl, database),
    PORT: String(port),
    HOST: '127.0.0.1',
    MARAUDERS_DATA_DIR: dataDir,
    JWT_SECRET: jwtSecret,
    WEB_DIR: join(webDir, 'dist'),
    // The metrics listener on a free port of its own, not the default 9464
    // another service on this machine may hold.
    METRICS_ADDRESS: '127.0.0.1:0',
    RUST_LOG: process.env.RUST_LOG ?? 'info',
    ...settings,
  };
  delete env.IGGY_URL; // the embedded log

  const logs = [];
  const child = spawn(binary, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk) => {
      logs.push(chunk.toString());
      if (process.env.TEST_LOG) process.stderr.write(chunk);
    });
  }
  let exited = null;
  const exit = new Promise((resolveExit) => child.on('exit', (code, signal) => resolveExit((exited = { code, signal }))));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`marauders-map exited (${JSON.stringify(exited)}):\n${logs.join('')}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`marauders-map did not become healthy:\n${logs.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    jwtSecret,
    logs: () => logs.join(''),
    /** `marauders-map user promote EMAIL ROLE` against this service's database. */
    async promote(email, role) {
      const { stdout } = await run(binary, ['user', 'promote', email, role], { env });
      return stdout.trim();
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exit;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
      await psql(adminUrl, `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => {});
    },
  };
}

/** Debian's Chromium, headless; nothing downloads a browser. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** An HS256 JWT with these claims, signed with the service's secret. */
export function signJwt(claims, secret) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

export function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}
