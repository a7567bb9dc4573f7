// Carrier trunks of the /v1 API (docs/platform-api.md): one resource per
// carrier that provisions LiveKit's inbound trunk, outbound trunk and
// dispatch rule in one commit. An edit is a PATCH of the fields that
// changed, so the write-only password stays unless a new one is typed.

import { v1 } from './api.js';
import { field, h, joined, replace, title, words } from './ui.js';
import { section, value } from './routing.js';

const DIRECTIONS = [['inbound', 'Inbound'], ['outbound', 'Outbound'], ['both', 'Both']];
const TRANSPORTS = [['auto', 'Auto'], ['udp', 'UDP'], ['tcp', 'TCP'], ['tls', 'TLS']];
const ENCRYPTION = [['disable', 'Off (RTP)'], ['allow', 'Allowed'], ['require', 'Required']];
const FORMATS = [['', 'As dialled'], ['+e164', '+E.164'], ['e164', 'E.164 without +'], ['national', 'National']];
const DISPATCH = [['individual', 'A new room per call'], ['direct', 'One room for every call'], ['callee', 'A room per called number']];
// Bounds the pages read for one listing (the server caps trunks at
// platform.max_trunks, 20 by default).
const MAX_PAGES = 50;

function fields(t) {
  const r = t || {};
  const dispatch = r.dispatch || {};
  return [
    field({ label: 'Name', name: 'name', value: r.name || '' }),
    h('p', { class: 'field hint' }, 'Kind: byoc (your own carrier), the only kind provisioned here.'),
    field({ label: 'Direction', name: 'direction', kind: 'select', options: DIRECTIONS, value: r.direction || 'both' }),
    field({ label: 'SIP address', name: 'sip_address', value: r.sip_address || '', hint: 'The carrier\'s SIP host, with an optional port; no scheme.', placeholder: 'sip.carrier.example' }),
    field({ label: 'Numbers', name: 'numbers', value: (r.numbers || []).join(', '), hint: 'E.164, separated by commas or spaces.' }),
    field({ label: 'Allowed addresses', name: 'allowed_addresses', value: (r.allowed_addresses || []).join(', '), hint: 'IPs or CIDR ranges inbound calls may come from.' }),
    field({ label: 'Auth user name', name: 'auth_username', value: r.auth_username || '' }),
    field({
      label: 'Auth password',
      name: 'auth_password',
      kind: 'password',
      autocomplete: 'new-password',
      hint: r.auth_password_set ? 'A password is set; leave this empty to keep it.' : 'Write-only: the API never shows it.',
    }),
    field({ label: 'Destination country', name: 'destination_country', value: r.destination_country || '', hint: 'ISO 3166-1 code in capitals, e.g. US.' }),
    field({ label: 'Transport', name: 'transport', kind: 'select', options: TRANSPORTS, value: r.transport || 'auto' }),
    field({ label: 'Media encryption', name: 'media_encryption', kind: 'select', options: ENCRYPTION, value: r.media_encryption || 'disable' }),
    field({ label: 'Number format', name: 'number_format', kind: 'select', options: FORMATS, value: r.number_format || '' }),
    field({ label: 'Inbound calls go to', name: 'dispatch_rule', kind: 'select', options: DISPATCH, value: dispatch.rule || 'individual' }),
    field({ label: 'Room prefix', name: 'room_prefix', value: dispatch.room_prefix || '' }),
    field({ label: 'Room name', name: 'room_name', value: dispatch.room_name || '', hint: 'For "one room for every call".' }),
  ];
}

function fromForm(form) {
  return {
    name: value(form, 'name'),
    kind: 'byoc',
    direction: value(form, 'direction'),
    sip_address: value(form, 'sip_address'),
    numbers: words(value(form, 'numbers')),
    allowed_addresses: words(value(form, 'allowed_addresses')),
    auth_username: value(form, 'auth_username'),
    auth_password: value(form, 'auth_password'),
    destination_country: value(form, 'destination_country'),
    transport: value(form, 'transport'),
    media_encryption: value(form, 'media_encryption'),
    number_format: value(form, 'number_format'),
    dispatch: {
      rule: value(form, 'dispatch_rule'),
      room_prefix: value(form, 'room_prefix'),
      room_name: value(form, 'room_name'),
    },
  };
}

/** A create: the fields given, without empty optional ones (the server's defaults apply). */
function createBody(form) {
  const body = {};
  for (const [key, v] of Object.entries(fromForm(form))) {
    if (key === 'dispatch') {
      const d = Object.fromEntries(Object.entries(v).filter(([, x]) => x !== ''));
      if (Object.keys(d).length) body.dispatch = d;
    } else if (Array.isArray(v) ? v.length : v !== '') {
      body[key] = v;
    }
  }
  return body;
}

/** A PATCH: the fields that differ from the record as listed; a new password only if typed. */
function patchBody(record, form) {
  const next = fromForm(form);
  const body = {};
  const same = (a, b) => JSON.stringify(a ?? '') === JSON.stringify(b ?? '');
  for (const [key, v] of Object.entries(next)) {
    if (key === 'auth_password') {
      if (v) body.auth_password = v;
    } else if (key === 'dispatch') {
      const was = record.dispatch || {};
      const d = Object.fromEntries(Object.entries(v).filter(([k, x]) => !same(x, was[k])));
      if (Object.keys(d).length) body.dispatch = d;
    } else if (key === 'numbers' || key === 'allowed_addresses') {
      if (!same(v, record[key] || [])) body[key] = v;
    } else if (!same(v, record[key])) {
      body[key] = v;
    }
  }
  return body;
}

async function listAll() {
  const all = [];
  let cursor = '';
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const query = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const answer = await v1('GET', `/v1/sip-trunks${query}`);
    all.push(...(answer.data || []));
    if (!answer.has_more || !answer.next_cursor) break;
    cursor = answer.next_cursor;
  }
  return all;
}

function records(t) {
  const ids = [
    ['inbound trunk', t.livekit_inbound_trunk_id],
    ['outbound trunk', t.livekit_outbound_trunk_id],
    ['rule', t.livekit_dispatch_rule_id],
  ].filter(([, id]) => id);
  return ids.length ? h('ul', { class: 'plain' }, ids.map(([what, id]) => h('li', {}, `${what} `, h('code', {}, id)))) : '—';
}

/** The carrier trunks page. */
export function carriersPage(main) {
  replace(main,
    title('Carrier trunks'),
    section({
      id: 'carriers-heading',
      heading: 'Carrier trunks (/v1 API)',
      intro: 'One entry per carrier: switchboard provisions its LiveKit inbound trunk, outbound trunk and dispatch rule together.',
      what: 'carrier trunk',
      key: (t) => t.id,
      list: listAll,
      columns: [
        ['ID', (t) => h('code', {}, t.id)],
        ['Name', (t) => t.name || '—'],
        ['Direction', (t) => t.direction],
        ['SIP address', (t) => t.sip_address || '—'],
        ['Numbers', (t) => joined(t.numbers)],
        ['LiveKit records', records],
      ],
      fields,
      create: (form) => v1('POST', '/v1/sip-trunks', createBody(form)),
      update: (t, form) => v1('PATCH', `/v1/sip-trunks/${encodeURIComponent(t.id)}`, patchBody(t, form)),
      remove: (t) => v1('DELETE', `/v1/sip-trunks/${encodeURIComponent(t.id)}`),
    }));
}
