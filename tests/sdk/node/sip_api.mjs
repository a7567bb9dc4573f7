// The LiveKit SIP API through the official Node SDK (`livekit-server-sdk`'s
// SipClient, JSON with lowerCamelCase names on the wire) against a running
// switchboard.
//
// Runs the Node examples of LiveKit's inbound and outbound trunk guides
// (seeds 002 and 003) as written, dispatch rules of the three kinds through
// the SDK's createSipDispatchRule (which sends the request's legacy
// top-level fields), and the failures a user meets, asserting on the Twirp
// code and message the SDK surfaces (LiveKit's texts: reference sections 2.3
// and 3).
//
// Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET and a server with
// no trunks or rules yet. Prints one line per step; exits 1 with the reason
// on the first failed assertion. crates/switchboard/tests/sdk.rs runs it.

import { ListUpdate, SIPTransport } from '@livekit/protocol';
import { AccessToken, SipClient } from 'livekit-server-sdk';

const url = process.env.LIVEKIT_URL;
const apiKey = process.env.LIVEKIT_API_KEY;
const apiSecret = process.env.LIVEKIT_API_SECRET;

const ID = (prefix) => new RegExp(`^${prefix}[2-9A-HJ-NP-Za-km-z]{12}$`);
const SECURITY_TEXT =
  'for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers';
const DENIED_TEXT = 'permissions denied';
const RULE_CONFLICT = (id, name) =>
  'Dispatch rule for the same trunk, inbound number, number, and PIN combination ' +
  `already exists in dispatch rule "${id}" "${name}"`;

class Failure extends Error {}

const show = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));

function check(condition, what) {
  if (!condition) throw new Failure(what);
}

// A trunk as Get and List show it: switchboard leaves authPassword empty
// there (api.return_passwords, off by default).
function asListed(trunk) {
  const shown = trunk.clone();
  shown.authPassword = '';
  return shown;
}

function eq(actual, expected, what) {
  if (show(actual) !== show(expected)) {
    throw new Failure(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

const sorted = (xs) => [...xs].sort();

/** A list as LiveKit prints it in conflict texts (Go's %q), or <any>. */
const goList = (items) => (items.length ? `[${items.map((n) => `"${n}"`).join(' ')}]` : '<any>');

/** LiveKit's inbound trunk conflict text. `candidate` and `stored` are
 * [id, numbers] pairs, id '' for a trunk being created. LiveKit names the
 * later trunk (in ID order, a new one last) first, with its numbers. */
function trunkConflict([cid, cnums], [sid, snums], allowedNumber) {
  const [first, firstNumbers, second] = cid === '' || cid > sid ? [cid || '<new>', cnums, sid] : [sid, snums, cid];
  const text = `Conflicting inbound SIP Trunks: "${first}" and "${second}", using the same number(s) ${goList(firstNumbers)}`;
  return allowedNumber === undefined ? `${text} without AllowedNumbers set` : `${text} and AllowedNumber "${allowedNumber}"`;
}

/** Runs `call`, which must fail with this Twirp code and HTTP status and, when
 * given, exactly `message` (or one of `messages`, or a match of `pattern`). */
async function expectError(call, code, status, what, { message, messages, pattern } = {}) {
  let result;
  try {
    result = await call();
  } catch (err) {
    if (err instanceof Failure) throw err;
    const got = `code=${show(err.code)} status=${err.status} message=${show(err.message)} meta=${show(err.metadata)}`;
    check(err.code === code && err.status === status, `${what}: expected Twirp ${code} (HTTP ${status}), got ${got}`);
    if (message !== undefined) check(err.message === message, `${what}: expected message ${show(message)}, got ${got}`);
    if (messages !== undefined) {
      check(messages.includes(err.message), `${what}: expected message one of ${show(messages)}, got ${got}`);
    }
    if (pattern !== undefined) check(pattern.test(err.message), `${what}: expected message matching ${pattern}, got ${got}`);
    return err;
  }
  throw new Failure(`${what}: expected Twirp ${code} (HTTP ${status}) but the call succeeded: ${show(result)}`);
}

function step(name) {
  console.log(`ok   ${name}`);
}

const sipClient = new SipClient(url, apiKey, apiSecret);

async function inboundIds(opts = {}) {
  return (await sipClient.listSipInboundTrunk(opts)).map((t) => t.sipTrunkId);
}
async function inbound(id) {
  const items = await sipClient.listSipInboundTrunk({ trunkIds: [id] });
  eq(items.length, 1, `listSipInboundTrunk trunkIds=[${id}] count`);
  return items[0];
}
async function outbound(id) {
  const items = await sipClient.listSipOutboundTrunk({ trunkIds: [id] });
  eq(items.length, 1, `listSipOutboundTrunk trunkIds=[${id}] count`);
  return items[0];
}
async function ruleIds(opts = {}) {
  return (await sipClient.listSipDispatchRule(opts)).map((r) => r.sipDispatchRuleId);
}
async function rule(id) {
  const items = await sipClient.listSipDispatchRule({ dispatchRuleIds: [id] });
  eq(items.length, 1, `listSipDispatchRule dispatchRuleIds=[${id}] count`);
  return items[0];
}

// -- seed 002: inbound trunks ------------------------------------------------

async function inboundTrunks() {
  // "Inbound trunk example".
  const numbers = ['+15105550100'];
  const name = 'My trunk';
  const trunkOptions = {
    krispEnabled: true,
  };
  const a = await sipClient.createSipInboundTrunk(name, numbers, trunkOptions);
  check(ID('ST_').test(a.sipTrunkId), `inbound trunk ID: got ${show(a.sipTrunkId)}`);
  eq([a.name, a.numbers, a.krispEnabled], ['My trunk', ['+15105550100'], true], 'inbound trunk fields');
  eq([a.allowedNumbers, a.allowedAddresses, a.metadata, a.authUsername], [[], [], '', ''], 'unset inbound fields');
  step('002 inbound trunk example (krispEnabled)');

  // "Accepting calls from specific phone numbers", with the guide's
  // snake_case option name (which the SDK still reads).
  const b = await sipClient.createSipInboundTrunk(name, numbers, {
    allowed_numbers: ['+13105550100', '+17145550100'],
  });
  check(ID('ST_').test(b.sipTrunkId) && b.sipTrunkId !== a.sipTrunkId, `second trunk ID: ${show(b.sipTrunkId)}`);
  eq(b.allowedNumbers, ['+13105550100', '+17145550100'], 'allowedNumbers');
  eq(b.krispEnabled, false, 'krispEnabled not asked for');
  step('002 allowed_numbers example');

  // "Accepting calls to any phone number": empty numbers, with auth.
  const c = await sipClient.createSipInboundTrunk('Any number', [], {
    authUsername: 'carrier-user',
    authPassword: 'carrier-pass',
  });
  eq([c.numbers, c.authUsername, c.authPassword], [[], 'carrier-user', 'carrier-pass'], 'any-number trunk');
  step('002 accept any number with auth');

  // "List inbound trunks".
  const rules = await sipClient.listSipInboundTrunk();
  eq(sorted(rules.map((t) => t.sipTrunkId)), sorted([a.sipTrunkId, b.sipTrunkId, c.sipTrunkId]), 'listed IDs');
  for (const created of [a, b, c]) {
    eq(rules.find((t) => t.sipTrunkId === created.sipTrunkId), asListed(created), `listed trunk ${created.sipTrunkId}`);
  }
  eq(sorted(await inboundIds({ numbers: ['+15105550100'] })), sorted([a.sipTrunkId, b.sipTrunkId, c.sipTrunkId]),
    'numbers filter keeps trunks on the number and the any-number trunk');
  eq(await inboundIds({ trunkIds: [b.sipTrunkId] }), [b.sipTrunkId], 'trunkIds filter');
  step('002 list inbound trunks');
  return { a, b, c };
}

async function inboundFailures({ a, b, c }) {
  await expectError(() => sipClient.createSipInboundTrunk('Second any-number trunk', [], {
    allowedAddresses: ['203.0.113.0/24'],
  }), 'invalid_argument', 400, 'second any-number trunk', {
    message: trunkConflict(['', []], [c.sipTrunkId, c.numbers]),
  });
  await expectError(() => sipClient.createSipInboundTrunk('Same number', ['+15105550100']),
    'invalid_argument', 400, 'second trunk on +15105550100 without allowed numbers', {
      message: trunkConflict(['', ['+15105550100']], [a.sipTrunkId, a.numbers]),
    });
  await expectError(() => sipClient.createSipInboundTrunk('Same caller', ['+15105550100'], {
    allowedNumbers: ['+13105550100'],
  }), 'invalid_argument', 400, 'trunk allowing a caller B allows on the same number', {
    message: trunkConflict(['', ['+15105550100']], [b.sipTrunkId, b.numbers], '+13105550100'),
  });
  eq(sorted(await inboundIds()), sorted([a.sipTrunkId, b.sipTrunkId, c.sipTrunkId]), 'trunks after refusals');
  step('conflicting inbound trunks refused with LiveKit\'s texts');

  await expectError(() => sipClient.createSipInboundTrunk('Open trunk', []),
    'invalid_argument', 400, 'inbound trunk with neither numbers nor auth nor addresses', { message: SECURITY_TEXT });
  await expectError(() => sipClient.createSipInboundTrunk('Open trunk', [], { allowedNumbers: ['+13105550100'] }),
    'invalid_argument', 400, 'inbound trunk with only allowed numbers', { message: SECURITY_TEXT });
  eq((await inboundIds()).length, 3, 'trunk count after refusals');
  step('inbound trunk with neither numbers nor auth nor addresses refused');
}

async function inboundUpdates({ a, b, c }) {
  // "Update specific fields of an inbound trunk", on B.
  const updatedTrunkFields = {
    numbers: new ListUpdate({ set: ['+15105550100'] }), // Replace existing list
    allowedNumbers: new ListUpdate({ add: ['+14155550100'] }), // Add to existing list
    name: 'My updated trunk',
  };
  let trunk = await sipClient.updateSipInboundTrunkFields(b.sipTrunkId, updatedTrunkFields);
  eq([trunk.sipTrunkId, trunk.name, trunk.numbers, trunk.allowedNumbers],
    [b.sipTrunkId, 'My updated trunk', ['+15105550100'], ['+13105550100', '+17145550100', '+14155550100']],
    'trunk after the update example');
  eq(await inbound(b.sipTrunkId), asListed(trunk), 'listed trunk after the update');
  step('002 update fields example (ListUpdate set and add, name)');

  const id = a.sipTrunkId;
  trunk = await sipClient.updateSipInboundTrunkFields(id, { numbers: new ListUpdate({ add: ['+15105550111'] }) });
  eq(trunk.numbers, ['+15105550100', '+15105550111'], 'ListUpdate add appends');
  trunk = await sipClient.updateSipInboundTrunkFields(id, { numbers: new ListUpdate({ remove: ['+15105550100'] }) });
  eq(trunk.numbers, ['+15105550111'], 'ListUpdate remove');
  trunk = await sipClient.updateSipInboundTrunkFields(id, {
    numbers: new ListUpdate({ add: ['+15105550122'], remove: ['+15105550111'] }),
    metadata: 'm1',
  });
  eq([trunk.numbers, trunk.metadata, trunk.name, trunk.krispEnabled],
    [['+15105550122'], 'm1', 'My trunk', true], 'ListUpdate add and remove; untouched fields kept');
  step('ListUpdate add/remove on numbers; scalar fields');

  await expectError(() => sipClient.updateSipInboundTrunkFields(id, {
    numbers: new ListUpdate({ set: ['+1'], remove: ['+2'] }),
  }), 'invalid_argument', 400, 'ListUpdate with set and remove', {
    message: 'cannot set and change the list at the same time',
  });
  await expectError(() => sipClient.updateSipInboundTrunkFields(id, {
    numbers: new ListUpdate({ clear: true, add: ['+2'] }),
  }), 'invalid_argument', 400, 'ListUpdate with clear and add', {
    message: 'cannot clear and change the list at the same time',
  });
  await expectError(() => sipClient.updateSipInboundTrunkFields(id, { numbers: new ListUpdate({ clear: true }) }),
    'invalid_argument', 400, 'ListUpdate clearing the only numbers', { message: SECURITY_TEXT });
  eq(await inbound(id), asListed(trunk), 'trunk after refused updates');
  const cleared = await sipClient.updateSipInboundTrunkFields(b.sipTrunkId, {
    allowedNumbers: new ListUpdate({ clear: true }),
  });
  eq([cleared.numbers, cleared.allowedNumbers], [['+15105550100'], []], 'ListUpdate clear on allowedNumbers');
  step('invalid ListUpdates refused; ListUpdate clear');
  return trunk;
}

// -- seed 002: replace -------------------------------------------------------

async function replaceInbound(trunkId) {
  // "Replace inbound trunk".
  const trunk = {
    name: 'My replaced trunk',
    numbers: ['+17025550100'],
    metadata: 'Replaced metadata',
    allowedAddresses: ['192.168.254.10'],
    allowedNumbers: ['+14155550100', '+17145550100'],
    krispEnabled: true,
  };
  const updatedTrunk = await sipClient.updateSipInboundTrunk(trunkId, trunk);
  eq([updatedTrunk.sipTrunkId, updatedTrunk.name, updatedTrunk.numbers, updatedTrunk.metadata,
    updatedTrunk.allowedAddresses, updatedTrunk.allowedNumbers, updatedTrunk.krispEnabled],
  [trunkId, 'My replaced trunk', ['+17025550100'], 'Replaced metadata', ['192.168.254.10'],
    ['+14155550100', '+17145550100'], true], 'replaced trunk');
  eq(await inbound(trunkId), asListed(updatedTrunk), 'listed trunk after replace');
  step('002 replace inbound trunk example');
  return updatedTrunk;
}

// -- seed 003: outbound trunks -----------------------------------------------

async function outboundTrunks() {
  // "Create an outbound trunk".
  const address = 'sip.telnyx.com';
  const numbers = ['+12135550100'];
  const trunkOptions = {
    auth_username: 'telnyx-user',
    auth_password: 'telnyx-pass',
  };
  const o1 = await sipClient.createSipOutboundTrunk('My trunk', address, numbers, trunkOptions);
  check(ID('ST_').test(o1.sipTrunkId), `outbound trunk ID: ${show(o1.sipTrunkId)}`);
  eq([o1.name, o1.address, o1.numbers, o1.authUsername, o1.authPassword, o1.transport],
    ['My trunk', 'sip.telnyx.com', ['+12135550100'], 'telnyx-user', 'telnyx-pass', SIPTransport.SIP_TRANSPORT_AUTO],
    'outbound trunk fields');
  const o2 = await sipClient.createSipOutboundTrunk('TCP trunk', '192.0.2.10:5070', ['*'], {
    transport: SIPTransport.SIP_TRANSPORT_TCP,
    destinationCountry: 'GB',
    headers: { 'X-Switchboard': 'test' },
  });
  eq([o2.numbers, o2.transport, o2.destinationCountry, o2.headers],
    [['*'], SIPTransport.SIP_TRANSPORT_TCP, 'GB', { 'X-Switchboard': 'test' }], 'TCP outbound trunk');
  step('003 create outbound trunk example; TCP trunk from any number');

  const rules = await sipClient.listSipOutboundTrunk();
  eq(sorted(rules.map((t) => t.sipTrunkId)), sorted([o1.sipTrunkId, o2.sipTrunkId]), 'listed outbound IDs');
  for (const created of [o1, o2]) {
    eq(rules.find((t) => t.sipTrunkId === created.sipTrunkId), asListed(created), `listed outbound ${created.sipTrunkId}`);
  }
  step('003 list outbound trunks');

  // "Update specific fields of an outbound trunk".
  const updatedTrunkFields = {
    name: 'My updated trunk',
    address: 'my-trunk.pstn.twilio.com',
    numbers: new ListUpdate({
      add: ['+15220501011'], // Add specific numbers to the trunk
      remove: ['+15105550100'], // Remove specific numbers from the trunk
    }),
  };
  let trunk = await sipClient.updateSipOutboundTrunkFields(o1.sipTrunkId, updatedTrunkFields);
  eq([trunk.name, trunk.address, trunk.numbers, trunk.authUsername],
    ['My updated trunk', 'my-trunk.pstn.twilio.com', ['+12135550100', '+15220501011'], 'telnyx-user'],
    'outbound trunk after the update example');
  trunk = await sipClient.updateSipOutboundTrunkFields(o1.sipTrunkId, {
    numbers: new ListUpdate({ set: ['+15105550100'] }),
    destinationCountry: 'US',
  });
  eq([trunk.numbers, trunk.destinationCountry, trunk.name], [['+15105550100'], 'US', 'My updated trunk'],
    'outbound ListUpdate set and country');
  eq(await outbound(o1.sipTrunkId), asListed(trunk), 'listed outbound trunk after updates');
  await expectError(() => sipClient.updateSipOutboundTrunkFields(o1.sipTrunkId, {
    address: 'sip:carrier.example.com',
  }), 'invalid_argument', 400, 'update setting a SIP URI address', { pattern: /should be a hostname or IP, not SIP URI/ });
  step('003 update outbound trunk fields example');

  // "Replace an outbound trunk".
  const replacement = {
    name: 'My replaced trunk',
    address: 'sip.telnyx.com',
    numbers: ['+17025550100'],
    metadata: '{"is_internal": true}',
    authUsername: 'telnyx-user-2',
    authPassword: 'telnyx-pass-2',
  };
  const updatedTrunk = await sipClient.updateSipOutboundTrunk(o1.sipTrunkId, replacement);
  eq([updatedTrunk.sipTrunkId, updatedTrunk.name, updatedTrunk.numbers, updatedTrunk.metadata,
    updatedTrunk.authUsername, updatedTrunk.destinationCountry],
  [o1.sipTrunkId, 'My replaced trunk', ['+17025550100'], '{"is_internal": true}', 'telnyx-user-2', ''],
  'replaced outbound trunk (country cleared)');
  eq(await outbound(o1.sipTrunkId), asListed(updatedTrunk), 'listed outbound trunk after replace');
  step('003 replace outbound trunk example');

  for (const address of ['sip:sip.telnyx.com', 'sips:sip.telnyx.com', '+15105550100@sip.telnyx.com']) {
    await expectError(() => sipClient.createSipOutboundTrunk('URI trunk', address, ['+15105550100']),
      'invalid_argument', 400, `outbound address ${show(address)}`,
      { pattern: /should be a hostname or IP, not SIP URI/ });
  }
  eq((await sipClient.listSipOutboundTrunk()).length, 2, 'outbound count after refusals');
  step('outbound address given as a SIP URI refused');
  return { o1: updatedTrunk, o2 };
}

// -- dispatch rules (the SDK sends the legacy request fields) ----------------

async function dispatchRules({ a, b, c }) {
  const direct = await sipClient.createSipDispatchRule({ type: 'direct', roomName: 'open-room', pin: '1234' }, {
    name: 'Direct', trunkIds: [a.sipTrunkId], metadata: 'direct-meta', attributes: { team: 'sales' },
  });
  check(ID('SDR_').test(direct.sipDispatchRuleId), `rule ID: ${show(direct.sipDispatchRuleId)}`);
  eq([direct.rule?.rule.case, direct.rule?.rule.value?.roomName, direct.rule?.rule.value?.pin],
    ['dispatchRuleDirect', 'open-room', '1234'], 'direct rule body');
  eq([direct.trunkIds, direct.name, direct.metadata, direct.attributes],
    [[a.sipTrunkId], 'Direct', 'direct-meta', { team: 'sales' }], 'direct rule fields');

  const individual = await sipClient.createSipDispatchRule({ type: 'individual', roomPrefix: 'call-' }, {
    name: 'Individual', trunkIds: [a.sipTrunkId], hidePhoneNumber: true,
  });
  eq([individual.rule?.rule.case, individual.rule?.rule.value?.roomPrefix, individual.hidePhoneNumber],
    ['dispatchRuleIndividual', 'call-', true], 'individual rule');

  const callee = await sipClient.createSipDispatchRule({ type: 'callee', roomPrefix: 'callee', randomize: true }, {
    name: 'Callee',
  });
  eq([callee.rule?.rule.case, callee.rule?.rule.value?.roomPrefix, callee.rule?.rule.value?.randomize, callee.trunkIds],
    ['dispatchRuleCallee', 'callee', true, []], 'callee rule (wildcard)');
  step('dispatch rules created: direct (pin), individual, callee');

  const all = await sipClient.listSipDispatchRule();
  eq(sorted(all.map((r) => r.sipDispatchRuleId)),
    sorted([direct, individual, callee].map((r) => r.sipDispatchRuleId)), 'listed rule IDs');
  for (const created of [direct, individual, callee]) {
    eq(all.find((r) => r.sipDispatchRuleId === created.sipDispatchRuleId), created, `listed rule ${created.name}`);
  }
  eq(sorted(await ruleIds({ trunkIds: [b.sipTrunkId] })), [callee.sipDispatchRuleId],
    'trunkIds filter for a trunk without rules keeps only the wildcard rule');
  step('list dispatch rules');

  // An open rule on the same trunk collides, whatever its kind.
  await expectError(() => sipClient.createSipDispatchRule({ type: 'callee', roomPrefix: 'x' }, {
    name: 'Clash', trunkIds: [a.sipTrunkId],
  }), 'invalid_argument', 400, 'open callee rule on the individual rule\'s trunk', {
    message: RULE_CONFLICT(individual.sipDispatchRuleId, 'Individual'),
  });
  // A second wildcard rule without pin or numbers collides with the callee rule.
  await expectError(() => sipClient.createSipDispatchRule({ type: 'direct', roomName: 'lobby' }, { name: 'Clash' }),
    'invalid_argument', 400, 'second open wildcard rule', {
      message: RULE_CONFLICT(callee.sipDispatchRuleId, 'Callee'),
    });
  eq((await ruleIds()).length, 3, 'rule count after refusals');
  step('conflicting dispatch rules refused');

  let r = await sipClient.updateSipDispatchRuleFields(individual.sipDispatchRuleId, {
    trunkIds: new ListUpdate({ add: [b.sipTrunkId] }),
    name: 'Individual A+B',
    attributes: { tier: 'gold' },
  });
  eq([r.trunkIds, r.name, r.attributes, r.hidePhoneNumber],
    [[a.sipTrunkId, b.sipTrunkId], 'Individual A+B', { tier: 'gold' }, true], 'rule after update');
  r = await sipClient.updateSipDispatchRuleFields(individual.sipDispatchRuleId, {
    trunkIds: new ListUpdate({ remove: [a.sipTrunkId] }),
  });
  eq(r.trunkIds, [b.sipTrunkId], 'rule trunkIds after remove');
  eq(await rule(individual.sipDispatchRuleId), r, 'listed rule after updates');
  await expectError(() => sipClient.updateSipDispatchRuleFields('SDR_nonexistent', { name: 'x' }),
    'not_found', 404, 'update of an unknown rule', { message: 'requested sip dispatch rule does not exist' });
  step('update dispatch rule fields (ListUpdate add/remove, name, attributes)');

  const replaced = await sipClient.updateSipDispatchRule(direct.sipDispatchRuleId, {
    rule: { rule: { case: 'dispatchRuleIndividual', value: { roomPrefix: 'replaced', noRandomness: true } } },
    trunkIds: [c.sipTrunkId],
    name: 'Replaced',
  });
  eq([replaced.sipDispatchRuleId, replaced.rule?.rule.case, replaced.rule?.rule.value?.noRandomness,
    replaced.trunkIds, replaced.name, replaced.metadata, replaced.attributes],
  [direct.sipDispatchRuleId, 'dispatchRuleIndividual', true, [c.sipTrunkId], 'Replaced', '', {}],
  'replaced rule (absent fields cleared)');
  eq(await rule(direct.sipDispatchRuleId), replaced, 'listed rule after replace');
  step('replace dispatch rule');

  for (const [name, created] of [['callee', callee], ['individual', r], ['replaced direct', replaced]]) {
    const deleted = await sipClient.deleteSipDispatchRule(created.sipDispatchRuleId);
    eq(deleted, created, `deleteSipDispatchRule returns the whole ${name} rule`);
  }
  eq(await ruleIds(), [], 'rules after deleting all');
  await expectError(() => sipClient.deleteSipDispatchRule(callee.sipDispatchRuleId),
    'not_found', 404, 'deleting a deleted rule', { message: 'requested sip dispatch rule does not exist' });
  step('delete dispatch rules of all three kinds');
}

// -- CreateSIPParticipant, legacy calls --------------------------------------

async function participants({ o1, o2 }) {
  // Not waiting for the answer: the callee joins the room and dialling
  // goes on, through a trunk on TEST-NET-1 (RFC 5737, never routed: no
  // real carrier is called).
  const testNet = await sipClient.createSipOutboundTrunk('test-net', '192.0.2.30', ['+15105550100']);
  const info = await sipClient.createSipParticipant(testNet.sipTrunkId, '+12135550100', 'open-room', {
    fromNumber: '+15105550100',
    participantIdentity: 'sip-test',
    participantName: 'Test call participant',
  });
  eq(info.participantIdentity, 'sip-test', 'createSipParticipant identity');
  eq(info.roomName, 'open-room', 'createSipParticipant room');
  check(info.sipCallId.startsWith('SCL_'), `sipCallId ${info.sipCallId}`);
  step('valid createSipParticipant joins the callee to the room and dials');

  await expectError(() => sipClient.createSipParticipant(o1.sipTrunkId, 'alice@example.com', 'open-room'),
    'invalid_argument', 400, 'createSipParticipant calling a SIP URI', {
      message: 'SipCallTo should be a phone number or SIP user, not a full SIP URI',
    });
  await expectError(() => sipClient.createSipParticipant('', '+12135550100', 'open-room'),
    'invalid_argument', 400, 'createSipParticipant without trunk or number', {
      message: 'missing sip trunk id and sip number',
    });
  await expectError(() => sipClient.createSipParticipant('ST_nonexistent', '+12135550100', 'open-room'),
    'not_found', 404, 'createSipParticipant with an unknown trunk');
  step('invalid createSipParticipant gets invalid_argument; unknown trunk not_found');

  // The SDK still offers the removed CreateSIPTrunk: LiveKit answers bad_route.
  await expectError(() => sipClient.createSipTrunk('+15105550100', { name: 'legacy' }),
    'bad_route', 404, 'legacy createSipTrunk');
  step('legacy CreateSIPTrunk gets bad_route');
}

async function deleteTrunks({ a, c }, { o2 }) {
  const deleted = await sipClient.deleteSipTrunk(c.sipTrunkId);
  eq(deleted.sipTrunkId, c.sipTrunkId, 'deleteSipTrunk returns the ID');
  check(!(await inboundIds()).includes(c.sipTrunkId), 'deleted inbound trunk still listed');
  check((await inboundIds()).includes(a.sipTrunkId), 'other inbound trunk gone');
  await sipClient.deleteSipTrunk(o2.sipTrunkId);
  check(!(await sipClient.listSipOutboundTrunk()).some((t) => t.sipTrunkId === o2.sipTrunkId),
    'deleted outbound trunk still listed');
  step('delete inbound and outbound trunks');
}

// -- tokens ------------------------------------------------------------------

async function tokens({ o1 }) {
  const token = async (grants, ttl) => {
    const at = new AccessToken(apiKey, apiSecret, ttl ? { ttl } : {});
    if (grants.video) at.addGrant(grants.video);
    if (grants.sip) at.addSIPGrant(grants.sip);
    return at.toJwt();
  };
  const client = (jwt) => new SipClient(url, undefined, undefined, { token: jwt });

  const noSip = client(await token({ video: { roomList: true } }));
  await expectError(() => noSip.listSipInboundTrunk(), 'unauthenticated', 401,
    'list with a token without a sip grant', { message: DENIED_TEXT });
  await expectError(() => noSip.createSipInboundTrunk('denied', ['+15105550199']), 'unauthenticated', 401,
    'create with a token without a sip grant', { message: DENIED_TEXT });
  const callOnly = client(await token({ sip: { call: true } }));
  await expectError(() => callOnly.listSipDispatchRule(), 'unauthenticated', 401,
    'list rules with only sip.call', { message: DENIED_TEXT });
  const adminOnly = client(await token({ sip: { admin: true } }));
  await expectError(() => adminOnly.createSipParticipant(o1.sipTrunkId, '+12135550100', 'open-room'),
    'unauthenticated', 401, 'createSipParticipant with sip.admin but not sip.call', { message: DENIED_TEXT });
  step('tokens without the needed grant get unauthenticated \'permissions denied\'');

  const expired = client(await token({ sip: { admin: true } }, '-10m'));
  await expectError(() => expired.listSipInboundTrunk(), 'unauthenticated', 401,
    'token expired 10 minutes ago', { pattern: /expired/i });
  const forged = new SipClient(url, apiKey, 'not-the-secret-but-just-as-long-0123456789');
  await expectError(() => forged.listSipOutboundTrunk(), 'unauthenticated', 401, 'token with the wrong secret');
  step('expired and forged tokens get unauthenticated');
}

async function main() {
  console.log(`livekit-server-sdk against ${url}`);
  const trunks = await inboundTrunks();
  await inboundFailures(trunks);
  trunks.a = await inboundUpdates(trunks);
  trunks.b = await replaceInbound(trunks.b.sipTrunkId);
  const out = await outboundTrunks();
  await dispatchRules(trunks);
  await participants(out);
  await deleteTrunks(trunks, out);
  await tokens(out);
}

try {
  await main();
  console.log('all Node SDK checks passed');
} catch (err) {
  if (err instanceof Failure) {
    console.log(`FAIL ${err.message}`);
  } else {
    console.log('FAIL unexpected error:', err);
  }
  process.exit(1);
}
