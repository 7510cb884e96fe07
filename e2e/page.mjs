#!/usr/bin/env node
// Uses Herald's web page as a person would: subscribes with the form,
// publishes with the other form, and reads back what the page shows.
//
//   node page.mjs BASE_URL [SPEC_JSON | -]     (spec from stdin if absent)
//
// SPEC_JSON: {"timeoutMs": 20000, "screenshot": "/tmp/herald.png"} (both optional)
//
// Prints one JSON object on stdout:
//   {"state": "...",                            // connection state once subscribed
//    "results": [{"text": "...", "ok": true}],  // publish form outcomes, in order
//    "events": [{"type": "...", "id": "...", "data": "...", "markup": false}], // oldest first
//    "after": {"state": "...", "button": "..."}, // after Unsubscribe
//    "diagnostics": [...]}                       // console errors, CSP violations
import { fail, parseArgs, withPage } from './browser.mjs';

// The publishes, in order: [topic, event type, data].
export const STEPS = [
  ['ui', '', '<b>bold?</b> & <script>alert(1)</script>'],
  ['other', 'greeting', 'line 1\r\nline 2'],
  ['ui', 'later', 'not listened for yet'], // dropped by the browser: no listener
  'listen:greeting later',
  ['ui', 'later', 'now listened for'],
  ['*', '', 'refused: "*" is no topic'],
  ['ui', '', ''],
];

async function main() {
  const { base, spec } = await parseArgs('node page.mjs BASE_URL [SPEC_JSON | -]');
  const timeout = spec.timeoutMs ?? 20000;
  const result = await withPage(`${base}/`, timeout + 15000, async (page, diagnostics) => {
    page.setDefaultTimeout(timeout);
    const out = { results: [], diagnostics };
    await page.fill('#topics', 'ui, other');
    await page.fill('#types', 'greeting');
    await page.click('#sub-button');
    await page.waitForFunction(() => document.getElementById('state').textContent !== 'connecting');
    out.state = await page.textContent('#state');

    let published = 0;
    for (const step of STEPS) {
      if (typeof step === 'string') {
        await page.fill('#types', step.slice('listen:'.length));
        continue;
      }
      const [topic, type, data] = step;
      await page.fill('#pub-topic', topic);
      await page.fill('#pub-event', type);
      await page.fill('#pub-data', data);
      const before = await page.textContent('#pub-result');
      await page.click('#pub-form button[type=submit]');
      await page.waitForFunction(
        (prev) => {
          const t = document.getElementById('pub-result').textContent;
          return t !== prev && t !== 'publishing…';
        },
        before,
      );
      out.results.push({
        text: await page.textContent('#pub-result'),
        ok: await page.$eval('#pub-result', (el) => el.classList.contains('ok')),
      });
      if (out.results.at(-1).ok && topic !== '*') published++;
    }
    // Events arrive in order, so once the last one is listed, every
    // earlier one that the page listens for is listed too.
    const listened = published - 1; // "not listened for yet" never shows
    await page.waitForFunction((n) => document.querySelectorAll('#events li').length >= n, listened);
    out.events = await page.$$eval('#events li', (items) =>
      items.reverse().map((li) => ({
        type: li.querySelector('.type').textContent,
        id: li.querySelector('.id').textContent,
        data: li.querySelector('pre').textContent,
        markup: li.querySelector('pre *') !== null,
      })),
    );
    if (spec.screenshot) await page.screenshot({ path: spec.screenshot, fullPage: true });

    await page.click('#sub-button');
    out.after = { state: await page.textContent('#state'), button: await page.textContent('#sub-button') };
    return out;
  });
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err) => fail(err.stack || String(err)));
