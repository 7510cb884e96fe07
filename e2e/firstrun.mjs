#!/usr/bin/env node
// The first use of the page of a `herald serve` started without keys, as
// a person would: open the link serve printed, subscribe with the default
// topic, publish, publish something refused, then subscribe to a stream
// the hub refuses. At 1280×900 every message must be on screen.
//
//   node firstrun.mjs BASE_URL [SPEC_JSON | -]     (spec from stdin if absent)
//
// SPEC_JSON: {"link": "http://…/#token=…", "timeoutMs": 20000, "screenshot": "/tmp/first.png"}
//
// Prints one JSON object on stdout:
//   {"afterLoad": {"href": "...", "hash": "...", "topics": "..."},
//    "state": "...",                              // once subscribed
//    "published": [{"text", "ok", "onScreen", "besideButton"}], // in order
//    "events": ["data", ...],                      // oldest first
//    "refused": {"text", "onScreen", "besideButton"},
//    "diagnostics": [...]}
import { fail, parseArgs, withPage } from './browser.mjs';

// where reports whether the element sel is wholly in the first screen of
// the page (what shows without scrolling), and whether it shares a line
// with the button of its row.
async function where(page, sel) {
  return page.$eval(sel, (el) => {
    const r = el.getBoundingClientRect();
    const top = r.top + window.scrollY;
    const bottom = r.bottom + window.scrollY;
    const button = el.closest('.row').querySelector('button').getBoundingClientRect();
    return {
      text: el.textContent,
      onScreen: top >= 0 && bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth && r.height > 0,
      besideButton: r.top < button.bottom && r.bottom > button.top,
    };
  });
}

async function publish(page, topic, data) {
  await page.fill('#pub-topic', topic);
  await page.fill('#pub-data', data);
  const before = await page.textContent('#pub-result');
  await page.click('#pub-form button[type=submit]');
  await page.waitForFunction((prev) => {
    const t = document.getElementById('pub-result').textContent;
    return t !== prev && t !== 'publishing…';
  }, before);
  return {
    ...(await where(page, '#pub-result')),
    ok: await page.$eval('#pub-result', (el) => el.classList.contains('ok')),
  };
}

async function main() {
  const { spec } = await parseArgs('node firstrun.mjs BASE_URL [SPEC_JSON | -]');
  const timeout = spec.timeoutMs ?? 20000;
  const result = await withPage(spec.link, timeout + 15000, async (page, diagnostics) => {
    page.setDefaultTimeout(timeout);
    await page.setViewportSize({ width: 1280, height: 900 });
    const out = { published: [], diagnostics };
    out.afterLoad = await page.evaluate(() => ({
      href: location.href,
      hash: location.hash,
      topics: document.getElementById('topics').value,
    }));

    await page.click('#sub-button');
    await page.waitForFunction(() => document.getElementById('state').textContent !== 'connecting');
    out.state = await page.textContent('#state');
    out.published.push(await publish(page, 'news', 'first event'));
    await page.waitForFunction(() => document.querySelectorAll('#events li').length >= 1);
    out.events = await page.$$eval('#events li pre', (els) => els.reverse().map((e) => e.textContent));
    out.published.push(await publish(page, '*', 'refused: "*" is no topic'));
    if (spec.screenshot) await page.screenshot({ path: spec.screenshot.replace(/\.png$/, '-publish.png') });

    await page.click('#sub-button'); // unsubscribe
    await page.fill('#topics', 'x'.repeat(1025)); // over the hub's topic length
    await page.click('#sub-button');
    await page.waitForFunction(() => document.getElementById('state').textContent.startsWith('refused: '));
    out.refused = await where(page, '#state');
    if (spec.screenshot) await page.screenshot({ path: spec.screenshot });
    return out;
  });
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err) => fail(err.stack || String(err)));
