#!/usr/bin/env node
// Publishes payloads to a Herald hub and records what a real EventSource in
// Chromium receives for them.
//
//   node eventsource.mjs BASE_URL [SPEC_JSON | -]     (spec from stdin if absent)
//
// SPEC_JSON: {
//   "topic": "matrix",          // topic subscribed to and published to
//   "payloads": [{"data": ..., "event": "...", "id": "...", "retry": 1000}, ...],
//   "timeoutMs": 30000          // for the whole exchange in the page
// }
// Each payload is POSTed to /publish as JSON, in order, with "topic" added;
// fields left out are not sent. After the last one the script publishes an
// end marker (type "message", data END) and stops when it arrives: the hub
// keeps order, so every event before it has arrived by then, and any extra
// event would be seen.
//
// Prints one JSON object on stdout:
//   {"published": [{"status": 200, "id": "...", "error": "..."}],  // payloads, then the end marker
//    "received": [{"type": "...", "data": "...", "lastEventId": "..."}],
//    "streamErrors": 0, "timedOut": false, "failure": "",
//    "timing": {"openMs": 5, "publishedMs": 90, "endMs": 91},  // since the page's EventSource was made
//    "diagnostics": [...]}
// and exits 1 with a message on stderr when the run did not complete.
import { fail, parseArgs, withPage } from './browser.mjs';

export const END = '__herald_e2e_end__';

async function main() {
  const { base, spec } = await parseArgs('node eventsource.mjs BASE_URL [SPEC_JSON | -]');
  const topic = spec.topic ?? 'matrix';
  const payloads = spec.payloads ?? [];
  const timeoutMs = spec.timeoutMs ?? 30000;
  if (!Array.isArray(payloads)) throw new Error('spec.payloads must be an array');

  const result = await withPage(`${base}/`, timeoutMs + 15000, async (page, diagnostics) => {
    const r = await page.evaluate(inPage, { topic, payloads, timeoutMs, end: END });
    r.diagnostics = diagnostics;
    return r;
  });
  process.stdout.write(JSON.stringify(result) + '\n');
  if (result.failure) fail(result.failure);
}

// inPage runs inside the hub's page, so EventSource and fetch are same-origin.
async function inPage({ topic, payloads, timeoutMs, end }) {
  const result = { published: [], received: [], streamErrors: 0, timedOut: false, failure: '', timing: {} };
  const t0 = performance.now();
  const mark = (name) => { result.timing[name] = Math.round(performance.now() - t0); };
  const es = new EventSource('/events?topic=' + encodeURIComponent(topic));
  let timer;
  try {
    let gotEnd;
    const ended = new Promise((resolve) => { gotEnd = resolve; });
    let opened;
    let refused;
    const open = new Promise((resolve, reject) => { opened = resolve; refused = reject; });
    es.addEventListener('open', () => opened());
    es.addEventListener('error', () => {
      result.streamErrors++;
      if (es.readyState === EventSource.CLOSED) refused(new Error('the hub refused the event stream'));
    });
    // EventSource hands a named event only to listeners for its type.
    const types = new Set(['message', ...payloads.map((p) => p.event).filter(Boolean)]);
    for (const type of types) {
      es.addEventListener(type, (e) => {
        result.received.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
        if (e.type === 'message' && e.data === end) gotEnd();
      });
    }
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        result.timedOut = true;
        reject(new Error(`timed out after ${timeoutMs} ms`));
      }, timeoutMs);
    });

    await Promise.race([open, timeout]);
    mark('openMs');
    for (const p of [...payloads, { data: end }]) {
      const res = await Promise.race([
        fetch('/publish', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ topic, ...p }),
        }),
        timeout,
      ]);
      const text = await res.text();
      let body = {};
      try { body = JSON.parse(text); } catch { body = { error: `not JSON: ${text.slice(0, 200)}` }; }
      result.published.push({ status: res.status, id: body.id ?? '', error: body.error ?? '' });
      if (!res.ok) throw new Error(`publish ${result.published.length}: ${res.status} ${body.error ?? ''}`);
    }
    mark('publishedMs');
    await Promise.race([ended, timeout]);
    mark('endMs');
  } catch (err) {
    result.failure = err.message;
  } finally {
    clearTimeout(timer);
    es.close();
  }
  return result;
}

main().catch((err) => fail(err.stack || String(err)));
