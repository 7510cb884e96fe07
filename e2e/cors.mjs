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
  const results = [];
  for (const pageURL of spec.pages ?? []) {
    const r = await withPage(pageURL, (spec.timeoutMs ?? 10000) + 15000, (page) =>
      page.evaluate(inPage, { hub: base, topic: spec.topic ?? 'cors', timeoutMs: spec.timeoutMs ?? 10000 }));
    results.push({ page: pageURL, ...r });
  }
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
