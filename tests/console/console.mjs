// Drives switchboard's web console (/console) in Debian's headless Chromium
// through playwright-core, as an operator would: sign in, create a trunk
// and a rule through the forms, see the API's own refusals, watch a real
// call (placed by the Rust test, crates/switchboard/tests/console.rs) show
// up in Live calls, hang it up, read its ladder in the history, download its
// trace, and check the layout at 390 px.
//
// Environment: CONSOLE_URL (http://127.0.0.1:<api port>), CONSOLE_KEY,
// CONSOLE_SECRET, CONSOLE_SCREENSHOTS (a folder it writes to).
// Talks with the Rust test over stdio, one line each:
//   stdout "ok: <step>"          a step passed
//   stdout "screenshot: <path>"  a screenshot was saved
//   stdout "call: ready"         the route exists: place the call
//   stdin  "live <call id>"      the call is live on the server now
//   stdout "hung up: <call id>"  the console's Hang up took the call away
//   stdin  "ended"               the caller got its BYE and the call is in the history
//   stdout "FAIL: <reason>"      then exit 1
// Nothing is downloaded: playwright-core uses /usr/bin/chromium.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

// playwright-core lives where tests/run installs tests/deps/*.npm.
const require = createRequire(new URL('../sdk/package.json', import.meta.url));

const BASE = process.env.CONSOLE_URL;
const KEY = process.env.CONSOLE_KEY;
const SECRET = process.env.CONSOLE_SECRET;
const SHOTS = process.env.CONSOLE_SCREENSHOTS;
const CHROMIUM = '/usr/bin/chromium';
const STEP_MS = 10000;

let failed = false;
function fail(reason) {
  if (!failed) {
    failed = true;
    console.log(`FAIL: ${String(reason).replace(/\n/g, ' | ')}`);
  }
  process.exit(1);
}
function ok(step) {
  console.log(`ok: ${step}`);
}
function check(condition, reason) {
  if (!condition) throw new Error(reason);
}

// -------------------------------------------------------------- stdin

const lines = [];
const waiters = [];
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const waiter = waiters.shift();
  if (waiter) waiter(line.trim());
  else lines.push(line.trim());
});
function nextLine(ms) {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no word from the test within ${ms} ms`)), ms);
    waiters.push((line) => {
      clearTimeout(timer);
      resolve(line);
    });
  });
}

// -------------------------------------------------------------- helpers

function decodeJwt(token) {
  const [, payload] = token.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

async function shot(page, name, fullPage = true) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  console.log(`screenshot: ${file}`);
}

/** Clicks a submit and answers the JSON of the API call it makes. */
async function submitAndAnswer(page, urlPart, click) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes(urlPart) && r.request().method() !== 'GET', { timeout: STEP_MS }),
    click(),
  ]);
  return { status: response.status(), body: await response.json() };
}

async function go(page, hash) {
  await page.goto(`${BASE}/console#/${hash}`);
  await page.locator('h1').first().waitFor({ timeout: STEP_MS });
  await settle(page);
}

/** Waits until the page has nothing loading (its lists load after the heading). */
async function settle(page) {
  await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]')
    && ![...document.querySelectorAll('main p')].some((p) => p.textContent.startsWith('Loading')));
  await page.waitForTimeout(400);
}

// -------------------------------------------------------------- the run

async function main() {
  check(BASE && KEY && SECRET && SHOTS, 'CONSOLE_URL, CONSOLE_KEY, CONSOLE_SECRET and CONSOLE_SCREENSHOTS must be set');
  check(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium package (tests/deps/console.apt)`);
  fs.mkdirSync(SHOTS, { recursive: true });
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is missing (${e.message}): tests/run installs tests/deps/console.npm into tests/sdk/node_modules`);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-console-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Without the background-networking flags Chromium calls home (updates,
    // field trials, sync) and floods a machine with no network.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
  });
  try {
    await run(context);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function run(context) {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('dialog', (dialog) => dialog.accept());

  // What the page does wrong is collected and checked at the end: script
  // errors, CSP violations, and any request that carries the secret.
  const problems = [];
  const tokens = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (4\d\d)/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on('request', async (request) => {
    const headers = await request.allHeaders().catch(() => request.headers());
    const body = request.postData() || '';
    const everything = `${request.url()}\n${JSON.stringify(headers)}\n${body}`;
    if (everything.includes(SECRET)) problems.push(`the secret was sent: ${request.method()} ${request.url()}`);
    if (!request.url().startsWith(BASE)) problems.push(`a request left the server: ${request.url()}`);
    const auth = headers.authorization || '';
    if (auth.startsWith('Bearer ')) tokens.push({ url: request.url(), body, claims: decodeJwt(auth.slice(7)) });
  });

  // ---- sign in
  await page.goto(`${BASE}/console`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await shot(page, '01-sign-in');
  await page.getByLabel('API key', { exact: true }).fill(KEY);
  await page.getByLabel('API secret', { exact: true }).fill('not-the-secret');
  const refused = await submitAndAnswer(page, 'ListBans', () => page.getByRole('button', { name: 'Sign in' }).click());
  const refusal = page.locator('form .error[role=alert] .msg');
  await refusal.waitFor();
  check(refused.status === 401, `a wrong secret answered ${refused.status}`);
  check(await refusal.textContent() === refused.body.msg, `shown "${await refusal.textContent()}", the API said "${refused.body.msg}"`);
  ok(`a wrong secret is refused with the API's words: ${refused.body.msg}`);
  await page.getByLabel('API secret', { exact: true }).fill(SECRET);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Trunks', level: 1 }).waitFor();
  const stored = await page.evaluate(() => ({ session: JSON.stringify(sessionStorage), local: JSON.stringify(localStorage), cookie: document.cookie }));
  check(stored.session.includes(SECRET), 'the secret is not in sessionStorage');
  check(!stored.local.includes(SECRET) && stored.cookie === '', 'the secret went somewhere other than sessionStorage');
  ok('signed in; the secret is in sessionStorage only');

  // ---- an inbound trunk through the form
  const inbound = page.getByRole('form', { name: 'New inbound trunk' });
  await inbound.getByLabel('Name', { exact: true }).fill('console trunk');
  await inbound.getByLabel('Numbers', { exact: true }).fill('+15550100');
  await inbound.getByLabel('Allowed addresses', { exact: true }).fill('127.0.0.1');
  const created = await submitAndAnswer(page, 'CreateSIPInboundTrunk', () => inbound.getByRole('button', { name: 'Create inbound trunk' }).click());
  const trunkId = created.body.sip_trunk_id;
  check(created.status === 200 && /^ST_/.test(trunkId || ''), `CreateSIPInboundTrunk answered ${created.status} ${JSON.stringify(created.body)}`);
  const trunkRow = page.locator(`tr[data-key="${trunkId}"]`);
  await trunkRow.waitFor();
  check((await trunkRow.textContent()).includes('+15550100') && (await trunkRow.textContent()).includes('127.0.0.1'), 'the trunk row lacks its number or address');
  ok(`created inbound trunk ${trunkId} (+15550100 from 127.0.0.1) through the form`);

  // ---- a conflicting trunk: the API's message, verbatim, next to the form
  const again = page.getByRole('form', { name: 'New inbound trunk' });
  await again.getByLabel('Name', { exact: true }).fill('duplicate');
  await again.getByLabel('Numbers', { exact: true }).fill('+15550100');
  const conflict = await submitAndAnswer(page, 'CreateSIPInboundTrunk', () => again.getByRole('button', { name: 'Create inbound trunk' }).click());
  const conflictShown = again.locator('.error[role=alert] .msg');
  await conflictShown.waitFor();
  check(conflict.status >= 400 && typeof conflict.body.msg === 'string', `the duplicate answered ${conflict.status} ${JSON.stringify(conflict.body)}`);
  check(await conflictShown.textContent() === conflict.body.msg, `shown "${await conflictShown.textContent()}", the API said "${conflict.body.msg}"`);
  check(/Conflicting inbound SIP Trunks/.test(conflict.body.msg), `unexpected refusal: ${conflict.body.msg}`);
  await shot(page, '02-trunks-conflict');
  ok(`a conflicting trunk shows the API's message next to the form: ${conflict.body.msg}`);

  // ---- edit (UpdateSIPInboundTrunk with replace) keeps the number and address
  await page.getByRole('button', { name: `Edit inbound trunk ${trunkId}` }).click();
  const edit = page.getByRole('form', { name: 'Edit inbound trunk' });
  await edit.getByLabel('Name', { exact: true }).fill('console trunk (edited)');
  const replaced = await submitAndAnswer(page, 'UpdateSIPInboundTrunk', () => edit.getByRole('button', { name: 'Save changes' }).click());
  check(replaced.status === 200 && replaced.body.name === 'console trunk (edited)', `UpdateSIPInboundTrunk answered ${replaced.status} ${JSON.stringify(replaced.body)}`);
  check(JSON.stringify(replaced.body.numbers) === '["+15550100"]' && JSON.stringify(replaced.body.allowed_addresses) === '["127.0.0.1"]', `the edit lost fields: ${JSON.stringify(replaced.body)}`);
  await page.locator(`tr[data-key="${trunkId}"]`, { hasText: 'console trunk (edited)' }).waitFor();
  const replaceToken = tokens.find((t) => t.url.includes('UpdateSIPInboundTrunk'));
  check(replaceToken && JSON.parse(replaceToken.body).replace, 'the edit was not sent as replace');
  ok('edited the trunk with UpdateSIPInboundTrunk replace; its numbers and addresses stayed');

  // ---- a direct dispatch rule into a room
  await page.getByRole('link', { name: 'Dispatch rules' }).click();
  const ruleForm = page.getByRole('form', { name: 'New dispatch rule' });
  await ruleForm.waitFor();
  await ruleForm.getByLabel('Name', { exact: true }).fill('console rule');
  await ruleForm.getByLabel('Rule', { exact: true }).selectOption('dispatch_rule_direct');
  await ruleForm.getByLabel('Room name', { exact: true }).fill('console-room');
  await ruleForm.getByLabel(trunkId).check();
  const rule = await submitAndAnswer(page, 'CreateSIPDispatchRule', () => ruleForm.getByRole('button', { name: 'Create dispatch rule' }).click());
  const ruleId = rule.body.sip_dispatch_rule_id;
  check(rule.status === 200 && /^SDR_/.test(ruleId || ''), `CreateSIPDispatchRule answered ${rule.status} ${JSON.stringify(rule.body)}`);
  check(JSON.stringify(rule.body.trunk_ids) === JSON.stringify([trunkId]), `the rule names ${JSON.stringify(rule.body.trunk_ids)}`);
  await page.locator(`tr[data-key="${ruleId}"]`, { hasText: 'direct → room console-room' }).waitFor();
  await shot(page, '03-rules');
  ok(`created dispatch rule ${ruleId} (direct into console-room, trunk ${trunkId})`);

  // ---- carrier trunks: one created, one refused with the /v1 error
  await page.getByRole('link', { name: 'Carrier trunks' }).click();
  const carrier = page.getByRole('form', { name: 'New carrier trunk' });
  await carrier.waitFor();
  await carrier.getByLabel('Name', { exact: true }).fill('carrier one');
  await carrier.getByLabel('Direction', { exact: true }).selectOption('outbound');
  await carrier.getByLabel('SIP address', { exact: true }).fill('sip.carrier.example');
  await carrier.getByLabel('Numbers', { exact: true }).fill('+14155550199');
  const made = await submitAndAnswer(page, '/v1/sip-trunks', () => carrier.getByRole('button', { name: 'Create carrier trunk' }).click());
  check(made.status === 201 && /^trunk_/.test(made.body.id || ''), `POST /v1/sip-trunks answered ${made.status} ${JSON.stringify(made.body)}`);
  await page.locator(`tr[data-key="${made.body.id}"]`).waitFor();
  const bad = page.getByRole('form', { name: 'New carrier trunk' });
  await bad.getByLabel('Name', { exact: true }).fill('bad carrier');
  await bad.getByLabel('Direction', { exact: true }).selectOption('inbound');
  await bad.getByLabel('SIP address', { exact: true }).fill('sip.carrier.example');
  await bad.getByLabel('Allowed addresses', { exact: true }).fill('not-an-address');
  const badAnswer = await submitAndAnswer(page, '/v1/sip-trunks', () => bad.getByRole('button', { name: 'Create carrier trunk' }).click());
  const badShown = bad.locator('.error[role=alert] .msg');
  await badShown.waitFor();
  check(badAnswer.status === 400 && badAnswer.body.error, `the bad carrier trunk answered ${badAnswer.status} ${JSON.stringify(badAnswer.body)}`);
  check(await badShown.textContent() === badAnswer.body.error.message, `shown "${await badShown.textContent()}", the API said "${badAnswer.body.error.message}"`);
  const fieldShown = await bad.locator('.error .fields li').allTextContents();
  check(fieldShown.some((f) => f.startsWith('allowed_addresses')), `the field errors shown: ${JSON.stringify(fieldShown)}`);
  await shot(page, '04-carriers');
  ok(`created carrier trunk ${made.body.id}; a bad one shows the /v1 error: ${badAnswer.body.error.message} (${fieldShown.join('; ')})`);

  // ---- explain the call about to be made
  await page.getByRole('link', { name: 'Explain a call' }).click();
  const explain = page.getByRole('form', { name: 'Call to explain' });
  await explain.getByLabel('From (caller)', { exact: true }).fill('+15550199');
  await explain.getByLabel('To (called number)', { exact: true }).fill('+15550100');
  await explain.getByLabel('Source IP', { exact: true }).fill('127.0.0.1');
  await explain.getByRole('button', { name: 'Explain' }).click();
  const verdict = page.locator('.verdict');
  await verdict.waitFor();
  const verdictText = await verdict.textContent();
  check(verdictText === `accepted: trunk ${trunkId}, rule ${ruleId}, room console-room`, `verdict: ${verdictText}`);
  await shot(page, '05-explain');
  ok(`ExplainCall says: ${verdictText}`);

  // ---- live calls: the call appears within 2 s, is hung up from here
  await page.getByRole('link', { name: 'Live calls' }).click();
  await page.getByText('No calls in progress.', { exact: true }).first().waitFor();
  console.log('call: ready');
  const liveLine = await nextLine(60000);
  const [word, callId] = liveLine.split(' ');
  check(word === 'live' && /^SCL_/.test(callId || ''), `expected "live <call id>", got "${liveLine}"`);
  const since = Date.now();
  const row = page.locator(`tr[data-call-id="${callId}"]`);
  await row.waitFor({ timeout: 2000 });
  const seenAfter = Date.now() - since;
  check((await row.textContent()).includes('console-room'), 'the live row does not name the room');
  await row.locator('td[data-label="Status"]', { hasText: 'active' }).waitFor({ timeout: 3000 });
  ok(`the call ${callId} appeared in Live calls ${seenAfter} ms after it went live`);

  // A transfer to something that is not a URI: the API's refusal in the row,
  // and a token with room admin of that very room.
  await row.getByRole('button', { name: `Transfer call ${callId}` }).click();
  const transfer = row.getByRole('form', { name: `Transfer call ${callId}` });
  await transfer.getByLabel('Transfer to', { exact: true }).fill('nowhere');
  const transferAnswer = await submitAndAnswer(page, 'TransferSIPParticipant', () => transfer.getByRole('button', { name: 'Transfer' }).click());
  const transferShown = row.locator('.error[role=alert] .msg');
  await transferShown.waitFor();
  check(await transferShown.textContent() === transferAnswer.body.msg, `shown "${await transferShown.textContent()}", the API said "${transferAnswer.body.msg}"`);
  check(/transfer_to must be/.test(transferAnswer.body.msg), `the transfer was refused for another reason: ${transferAnswer.body.msg}`);
  const transferToken = tokens.find((t) => t.url.includes('TransferSIPParticipant'));
  check(transferToken && transferToken.claims.video && transferToken.claims.video.roomAdmin === true && transferToken.claims.video.room === 'console-room',
    `the transfer token's grants: ${JSON.stringify(transferToken && transferToken.claims)}`);
  await shot(page, '06-live-call');
  ok(`Transfer reaches TransferSIPParticipant with room admin of console-room; its refusal is shown: ${transferAnswer.body.msg}`);

  await row.getByRole('button', { name: `Hang up call ${callId}` }).click();
  await row.waitFor({ state: 'detached', timeout: 5000 });
  console.log(`hung up: ${callId}`);
  const endedLine = await nextLine(30000);
  check(endedLine === 'ended', `expected "ended", got "${endedLine}"`);
  ok('Hang up ended the call (the caller got a BYE)');

  // ---- history: filters, the row, the call's page and ladder
  await page.getByRole('link', { name: 'Call history' }).click();
  const historyRow = page.locator(`tr[data-key="${callId}"]`);
  await historyRow.waitFor();
  const historyText = await historyRow.textContent();
  check(historyText.includes('answered') && historyText.includes('PARTICIPANT_REMOVED'), `the history row: ${historyText}`);
  const filters = page.getByRole('search', { name: 'Filter calls' });
  await filters.getByLabel('Result', { exact: true }).selectOption('refused');
  await filters.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No calls match.').waitFor();
  await filters.getByLabel('Result', { exact: true }).selectOption('answered');
  await page.getByRole('search', { name: 'Filter calls' }).getByLabel('Room', { exact: true }).fill('console-room');
  await page.getByRole('search', { name: 'Filter calls' }).getByRole('button', { name: 'Search' }).click();
  await page.locator(`tr[data-key="${callId}"]`).waitFor();
  const filterToken = tokens.filter((t) => t.url.includes('ListCalls')).map((t) => JSON.parse(t.body || '{}')).at(-1);
  check(filterToken.result === 'answered' && filterToken.room === 'console-room', `ListCalls was asked ${JSON.stringify(filterToken)}`);
  await shot(page, '07-history');
  ok('Call history lists the call (answered, PARTICIPANT_REMOVED); the result and room filters work');

  await page.locator(`tr[data-key="${callId}"] a`).first().click();
  await page.getByRole('heading', { name: `Call ${callId}`, level: 1 }).waitFor();
  await page.locator('.ladder .step').first().waitFor();
  const steps = await page.locator('.ladder .step').evaluateAll((els) => els.map((e) => `${e.classList.contains('sent') ? '->' : '<-'} ${e.dataset.label}`));
  const wanted = [/^<- INVITE /, /^-> 200 /, /^<- ACK /, /^-> BYE /, /^<- 200 /];
  let at = 0;
  for (const step of steps) {
    if (at < wanted.length && wanted[at].test(step)) at += 1;
  }
  check(at === wanted.length, `the ladder lacks ${wanted[at]}: ${JSON.stringify(steps)}`);
  const facts = await page.locator('dl.facts').first().textContent();
  check(facts.includes('answered') && facts.includes('participant removed') && facts.includes('console-room') && facts.includes('200 OK'), `the record: ${facts}`);
  const invite = page.locator('.ladder .step.received').first();
  await invite.getByRole('button').click();
  const message = invite.locator('pre.message');
  await message.waitFor();
  const messageText = await message.textContent();
  check(/^INVITE sip:\+15550100@/.test(messageText) && /Call-ID: /i.test(messageText), `the INVITE shown: ${messageText.slice(0, 200)}`);
  check(await invite.getByRole('button').getAttribute('aria-expanded') === 'true', 'the arrow does not say it is expanded');
  await shot(page, '08-call-ladder');
  ok(`the call's page draws the ladder (${steps.length} arrows: ${steps.map((s) => s.split(' ').slice(0, 2).join(' ')).join(', ')}) and shows the INVITE when pressed`);

  const [textDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download text trace' }).click()]);
  const textFile = path.join(SHOTS, `${callId}.txt`);
  await textDownload.saveAs(textFile);
  const traceText = fs.readFileSync(textFile, 'utf8');
  check(textDownload.suggestedFilename() === `${callId}.txt` && traceText.includes('INVITE sip:') && traceText.includes('BYE sip:'), `the text trace (${textDownload.suggestedFilename()}): ${traceText.slice(0, 200)}`);
  const [pcapDownload] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download pcap' }).click()]);
  const pcapFile = path.join(SHOTS, `${callId}.pcap`);
  await pcapDownload.saveAs(pcapFile);
  const pcap = fs.readFileSync(pcapFile);
  check(pcap.length > 24 && pcap.readUInt32LE(0) === 0xa1b2c3d4, `the pcap download: ${pcap.length} bytes, magic ${pcap.length >= 4 ? pcap.readUInt32LE(0).toString(16) : '-'}`);
  ok(`downloaded the trace as text (${traceText.length} characters) and pcap (${pcap.length} bytes): ${textFile}, ${pcapFile}`);

  // ---- bans
  await page.getByRole('link', { name: 'Bans' }).click();
  await page.getByText('No source is banned.').waitFor();
  await shot(page, '09-bans');
  ok('Bans lists none');

  // ---- tokens: minted here, short-lived, with the SIP grants
  check(tokens.length > 10, `only ${tokens.length} authorised requests`);
  for (const t of tokens) {
    const c = t.claims;
    check(c.iss === KEY && c.sip && c.sip.admin === true && c.sip.call === true, `token claims ${JSON.stringify(c)}`);
    check(c.exp - c.nbf <= 120 && c.exp > c.nbf && typeof c.sub === 'string', `token lifetime ${JSON.stringify(c)}`);
  }
  ok(`${tokens.length} requests carried tokens signed in the browser (iss ${KEY}, sip admin and call, ${tokens[0].claims.exp - tokens[0].claims.nbf} s)`);

  // ---- every input labelled, on every page
  const pages = ['trunks', 'rules', 'carriers', 'explain', 'live', 'history', `calls/${callId}`, 'bans'];
  for (const hash of pages) {
    await go(page, hash);
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => !el.labels?.length && !el.getAttribute('aria-label'))
      .map((el) => el.outerHTML));
    check(unlabelled.length === 0, `#/${hash}: inputs without a label: ${unlabelled.join(' ')}`);
    const fakeButtons = await page.evaluate(() => [...document.querySelectorAll('[onclick], div[role=button], span[role=button], a:not([href])')].map((el) => el.outerHTML));
    check(fakeButtons.length === 0, `#/${hash}: clickable things that are not buttons or links: ${fakeButtons.join(' ')}`);
  }
  ok('every input on every page has a label; every control is a button or a link');

  // ---- keyboard: focus is visible
  await go(page, 'trunks');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  const focusRing = await page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return { tag: el.tagName, text: el.textContent.trim(), outline: `${style.outlineStyle} ${style.outlineWidth}` };
  });
  check(!focusRing.outline.startsWith('none') && parseFloat(focusRing.outline.split(' ')[1]) >= 2, `focus on ${focusRing.tag} "${focusRing.text}" has outline ${focusRing.outline}`);
  ok(`keyboard focus is visible (${focusRing.tag} "${focusRing.text}": outline ${focusRing.outline})`);

  // ---- a phone: 390 px wide, nothing scrolls sideways
  await page.setViewportSize({ width: 390, height: 844 });
  for (const hash of pages) {
    await go(page, hash);
    const width = await page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth));
    check(width <= 390, `#/${hash} is ${width} px wide at 390 px`);
  }
  await go(page, 'trunks');
  await shot(page, '10-phone-trunks');
  await go(page, `calls/${callId}`);
  await page.locator('.ladder .step').first().waitFor();
  await page.locator('.ladder .step.sent').first().getByRole('button').click();
  await shot(page, '11-phone-call');
  await go(page, 'history');
  await page.locator(`tr[data-key="${callId}"]`).waitFor();
  await shot(page, '12-phone-history', false);
  ok(`no page scrolls sideways at 390x844 (${pages.length} pages)`);

  // ---- sign out
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const after = await page.evaluate(() => JSON.stringify(sessionStorage));
  check(!after.includes(SECRET), 'the secret outlived the sign-out');
  ok('signed out: the secret is gone from sessionStorage');

  check(problems.length === 0, problems.join('; '));
  ok('no script errors, no CSP violations, no request carried the secret or left the server');
}

const overall = setTimeout(() => fail('the script ran past 150 s'), 150000);
main().then(() => {
  clearTimeout(overall);
  console.log('done');
  process.exit(0);
}, (e) => fail(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' ') : e));
