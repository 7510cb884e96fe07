// Shared launcher for the browser scripts: Debian's Chromium driven by
// playwright-core, which never downloads a browser of its own.
import { access, constants, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.HERALD_CHROMIUM || '/usr/bin/chromium';

// The flags this machine's Chromium needs: no sandbox as root, and no
// background traffic to hosts that the closed network refuses.
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// fail prints msg on stderr and sets a failing exit code.
export function fail(msg) {
  process.stderr.write(`${process.argv[1]}: ${msg}\n`);
  process.exitCode = 1;
}

// parseArgs returns the hub's base URL (no trailing slash) from argv[2] and
// the JSON spec from argv[3], or from stdin when argv[3] is absent or "-".
export async function parseArgs(usage) {
  const [base, specArg] = process.argv.slice(2);
  if (!base || !/^https?:\/\//.test(base)) throw new Error(`usage: ${usage}`);
  let text = specArg;
  if (text === undefined || text === '-') {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    text = Buffer.concat(chunks).toString('utf8');
  }
  let spec;
  try {
    spec = text.trim() === '' ? {} : JSON.parse(text);
  } catch (err) {
    throw new Error(`spec is not JSON: ${err.message}`);
  }
  return { base: base.replace(/\/+$/, ''), spec };
}

// withPage launches Chromium with a fresh profile, opens a page at url and
// calls fn(page, diagnostics). The browser is closed and the profile removed
// on every path: success, error, timeout (deadlineMs for the whole run) and
// SIGINT/SIGTERM.
export async function withPage(url, deadlineMs, fn) {
  try {
    await access(CHROMIUM, constants.X_OK);
  } catch {
    throw new Error(`${CHROMIUM} not found: run scripts/install-test-deps.sh (Debian package chromium)`);
  }
  const profile = await mkdtemp(join(tmpdir(), 'herald-e2e-'));
  let context;
  let closing;
  const close = () => {
    closing ??= (async () => {
      try {
        if (context) await context.close();
      } catch { /* browser already gone */ }
      await rm(profile, { recursive: true, force: true });
    })();
    return closing;
  };
  const onSignal = (sig) => {
    process.stderr.write(`${process.argv[1]}: ${sig}: closing the browser\n`);
    close().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    const run = (async () => {
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
        chromiumSandbox: false,
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        viewport: { width: 1280, height: 860 },
      });
      if (closing) {
        // The deadline passed while Chromium was starting.
        await context.close().catch(() => {});
        throw new Error('browser started after the deadline');
      }
      const page = context.pages()[0] ?? (await context.newPage());
      // What the page itself reports: script errors and CSP violations.
      const diagnostics = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') diagnostics.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (err) => diagnostics.push(`page error: ${err.message}`));
      const res = await page.goto(url);
      if (!res || !res.ok()) throw new Error(`GET ${url}: ${res ? res.status() : 'no response'}`);
      return await fn(page, diagnostics);
    })();
    run.catch(() => {}); // reported through the race below
    return await Promise.race([run, deadline]);
  } finally {
    clearTimeout(timer);
    await close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
