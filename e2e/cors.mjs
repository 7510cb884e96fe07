#!/usr/bin/env node
// Opens a page on another origin and has it subscribe to a Herald hub
// with a real EventSource (credentials included), to see whether the hub's
// CORS policy lets it.
//
//   node cors.mjs HUB_URL [SPEC_JSON | -]
//
// SPEC_JSON: {"pages": ["http://127.0.0.1:1234/", ...], "topic": "cors", "timeoutMs": 10000}
// Prints {"results": [{"page": ..., "opened": true, "closed": false, "data": "..."}]}:
// opened means the stream opened and delivered its first event, closed
// that the EventSource gave up for good.
import { fail, parseArgs, withPage } from './browser.mjs';

async function main() {
  const { base, spec } = await parseArgs('node cors.mjs HUB_URL [SPEC_JSON | -]');
  const pages = spec.pages ?? [];
  const timeoutMs = spec.timeoutMs ?? 10000;
  // One browser for every page (its start is most of the run's time);
  // each page is its own origin all the same.
  const results = pages.length === 0 ? [] : await withPage(pages[0], timeoutMs * pages.length + 15000, async (page) => {
    const out = [];
    for (const [i, pageURL] of pages.entries()) {
      if (i > 0) {
        const res = await page.goto(pageURL);
        if (!res || !res.ok()) throw new Error(`GET ${pageURL}: ${res ? res.status() : 'no response'}`);
      }
      const r = await page.evaluate(inPage, { hub: base, topic: spec.topic ?? 'cors', timeoutMs });
      out.push({ page: pageURL, ...r });
    }
    return out;
  });
  process.stdout.write(JSON.stringify({ results }) + '\n');
}

async function inPage({ hub, topic, timeoutMs }) {
  const es = new EventSource(`${hub}/events?topic=${encodeURIComponent(topic)}&lastEventId=earliest`, { withCredentials: true });
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ opened: false, closed: false, data: '', timedOut: true }), timeoutMs);
      es.addEventListener('message', (e) => { clearTimeout(timer); resolve({ opened: true, closed: false, data: e.data }); });
      es.addEventListener('error', () => {
        if (es.readyState === EventSource.CLOSED) { clearTimeout(timer); resolve({ opened: false, closed: true, data: '' }); }
      });
    });
  } finally {
    es.close();
  }
}

main().catch((err) => fail(err.stack || String(err)));
