#!/usr/bin/env node
// Keeps a real EventSource in Chromium open on a Herald hub while the Go
// test ends its stream and publishes more, and records everything it
// receives; the browser has to reconnect and resume by itself.
//
//   node resume.mjs BASE_URL [SPEC_JSON | -]
//
// SPEC_JSON: {"topic": "resume", "end": "END", "timeoutMs": 30000}
// Prints {"received": [{"data": ..., "lastEventId": ...}], "opens": 2,
// "errors": 1, "failure": ""} once the event with data END arrived (not
// included), or on timeout with failure set.
import { fail, parseArgs, withPage } from './browser.mjs';

async function main() {
  const { base, spec } = await parseArgs('node resume.mjs BASE_URL [SPEC_JSON | -]');
  const args = { topic: spec.topic ?? 'resume', end: spec.end ?? 'END', timeoutMs: spec.timeoutMs ?? 30000 };
  const result = await withPage(`${base}/`, args.timeoutMs + 15000, async (page, diagnostics) => {
    const r = await page.evaluate(inPage, args);
    r.diagnostics = diagnostics;
    return r;
  });
  process.stdout.write(JSON.stringify(result) + '\n');
  if (result.failure) fail(result.failure);
}

async function inPage({ topic, end, timeoutMs }) {
  const result = { received: [], opens: 0, errors: 0, failure: '' };
  const es = new EventSource('/events?topic=' + encodeURIComponent(topic));
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      es.addEventListener('open', () => result.opens++);
      es.addEventListener('error', () => {
        result.errors++;
        if (es.readyState === EventSource.CLOSED) {
          clearTimeout(timer);
          reject(new Error('the EventSource was closed for good'));
        }
      });
      es.addEventListener('message', (e) => {
        if (e.data === end) {
          clearTimeout(timer);
          resolve();
          return;
        }
        result.received.push({ data: e.data, lastEventId: e.lastEventId });
      });
    });
  } catch (err) {
    result.failure = String(err.message || err);
  } finally {
    es.close();
  }
  return result;
}

main().catch((err) => fail(err.stack || String(err)));
