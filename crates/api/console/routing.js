// Trunks (inbound and outbound), dispatch rules and ExplainCall: LiveKit's
// SIP API as JSON. An edit sends the whole record (`replace`), starting
// from the record as listed, so fields the form does not show are kept.

import { sip, switchboard } from './api.js';
import {
  busy, errorBox, field, h, joined, replace, showError, statusLine, table, title, words,
} from './ui.js';

const ENCRYPTION = [
  ['SIP_MEDIA_ENCRYPT_DISABLE', 'Off (RTP)'],
  ['SIP_MEDIA_ENCRYPT_ALLOW', 'Allowed (SRTP if offered)'],
  ['SIP_MEDIA_ENCRYPT_REQUIRE', 'Required (SRTP only)'],
];
const TRANSPORTS = [
  ['SIP_TRANSPORT_AUTO', 'Auto'],
  ['SIP_TRANSPORT_UDP', 'UDP'],
  ['SIP_TRANSPORT_TCP', 'TCP'],
  ['SIP_TRANSPORT_TLS', 'TLS'],
];

export function value(form, name) {
  const el = form.elements.namedItem(name);
  if (!el) {
    return '';
  }
  return el.type === 'checkbox' ? el.checked : el.value.trim();
}

function enumValue(v, fallback) {
  return typeof v === 'string' && v ? v : fallback;
}

/**
 * A list-and-form section for one kind of record. `spec`: heading, what
 * (singular noun), list(), key(record), columns, fields(record|null),
 * create(form), update(record, form), remove(record).
 */
export function section(spec) {
  const listBox = h('div', { class: 'list' });
  const listError = errorBox();
  const formError = errorBox();
  const saved = statusLine();
  const formTitle = h('h3', {});
  const fieldsBox = h('div', { class: 'fields-grid' });
  const submit = h('button', { type: 'submit', class: 'primary' });
  const cancel = h('button', { type: 'button', hidden: true }, 'Cancel edit');
  const form = h('form', { class: 'card', novalidate: true, 'aria-label': spec.what },
    formTitle, fieldsBox, formError, h('div', { class: 'actions' }, submit, cancel), saved);
  let editing = null;

  function openForm(record) {
    editing = record;
    replace(formTitle, record ? `Edit ${spec.what} ${spec.key(record)}` : `New ${spec.what}`);
    form.setAttribute('aria-label', record ? `Edit ${spec.what}` : `New ${spec.what}`);
    replace(fieldsBox, spec.fields(record));
    submit.textContent = record ? 'Save changes' : `Create ${spec.what}`;
    cancel.hidden = !record;
    showError(formError, null);
  }

  async function load() {
    try {
      const records = await spec.list();
      showError(listError, null);
      const columns = [
        ...spec.columns,
        ['Actions', (r) => h('div', { class: 'row-actions' },
          h('button', {
            type: 'button',
            'aria-label': `Edit ${spec.what} ${spec.key(r)}`,
            on: {
              click: () => {
                openForm(r);
                form.scrollIntoView({ block: 'start' });
                const first = form.querySelector('input, select, textarea');
                if (first) first.focus();
              },
            },
          }, 'Edit'),
          h('button', {
            type: 'button',
            class: 'danger',
            'aria-label': `Delete ${spec.what} ${spec.key(r)}`,
            on: {
              click: async (event) => {
                if (!window.confirm(`Delete ${spec.what} ${spec.key(r)}?`)) return;
                event.target.disabled = true;
                try {
                  await spec.remove(r);
                  saved.textContent = `Deleted ${spec.key(r)}.`;
                  if (editing && spec.key(editing) === spec.key(r)) openForm(null);
                  await load();
                } catch (e) {
                  showError(listError, e);
                  event.target.disabled = false;
                }
              },
            },
          }, 'Delete'))],
      ];
      replace(listBox, table(spec.heading, columns, records, { key: spec.key, empty: `No ${spec.what}s.` }));
    } catch (e) {
      showError(listError, e);
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    saved.textContent = '';
    await busy(form, async () => {
      try {
        const result = editing ? await spec.update(editing, form) : await spec.create(form);
        showError(formError, null);
        saved.textContent = `${editing ? 'Saved' : 'Created'} ${spec.key(result)}.`;
        openForm(null);
        await load();
      } catch (e) {
        showError(formError, e);
      }
    });
  });
  cancel.addEventListener('click', () => openForm(null));

  openForm(null);
  load();
  return h('section', { class: 'section', 'aria-labelledby': spec.id },
    h('h2', { id: spec.id }, spec.heading),
    spec.intro ? h('p', { class: 'intro' }, spec.intro) : null,
    listError, listBox, form);
}

// ---------------------------------------------------------------- trunks


// A trunk's password field. The API never shows a stored password, and an
// edit replaces the whole trunk, so the hint says to type it again.
function passwordField(t) {
  const hidden = Boolean(t && t.auth_username && !t.auth_password);
  return field({
    label: 'Auth password',
    name: 'auth_password',
    kind: 'password',
    autocomplete: 'new-password',
    value: (t && t.auth_password) || '',
    hint: hidden ? 'The API does not show passwords and an edit replaces the whole trunk: enter the password again, or it is removed.' : '',
  });
}

function inboundFields(t) {
  const r = t || {};
  return [
    field({ label: 'Name', name: 'name', value: r.name || '' }),
    field({ label: 'Numbers', name: 'numbers', value: (r.numbers || []).join(', '), hint: 'Called numbers this trunk takes, E.164, separated by commas or spaces; empty takes any number.', placeholder: '+15550100' }),
    field({ label: 'Allowed addresses', name: 'allowed_addresses', value: (r.allowed_addresses || []).join(', '), hint: 'IP addresses or CIDR ranges calls may come from.', placeholder: '203.0.113.0/24' }),
    field({ label: 'Allowed caller numbers', name: 'allowed_numbers', value: (r.allowed_numbers || []).join(', '), hint: 'Empty: any caller.' }),
    field({ label: 'Auth user name', name: 'auth_username', value: r.auth_username || '', hint: 'With a password, callers must answer a digest challenge.' }),
    passwordField(t),
    field({ label: 'Media encryption', name: 'media_encryption', kind: 'select', options: ENCRYPTION, value: enumValue(r.media_encryption, ENCRYPTION[0][0]) }),
    field({ label: 'Metadata', name: 'metadata', value: r.metadata || '' }),
  ];
}

function inboundFromForm(base, form) {
  return {
    ...base,
    name: value(form, 'name'),
    numbers: words(value(form, 'numbers')),
    allowed_addresses: words(value(form, 'allowed_addresses')),
    allowed_numbers: words(value(form, 'allowed_numbers')),
    auth_username: value(form, 'auth_username'),
    auth_password: value(form, 'auth_password'),
    media_encryption: value(form, 'media_encryption'),
    metadata: value(form, 'metadata'),
  };
}

function outboundFields(t) {
  const r = t || {};
  return [
    field({ label: 'Name', name: 'name', value: r.name || '' }),
    field({ label: 'Address', name: 'address', value: r.address || '', hint: 'The carrier\'s SIP host name or IP, with an optional port.', placeholder: 'sip.carrier.example' }),
    field({ label: 'Transport', name: 'transport', kind: 'select', options: TRANSPORTS, value: enumValue(r.transport, TRANSPORTS[0][0]) }),
    field({ label: 'Numbers', name: 'numbers', value: (r.numbers || []).join(', '), hint: 'Caller IDs calls through this trunk may use, E.164.' }),
    field({ label: 'Destination country', name: 'destination_country', value: r.destination_country || '', hint: 'ISO code, e.g. US; optional.' }),
    field({ label: 'From host', name: 'from_host', value: r.from_host || '', hint: 'Host part of the From header; optional.' }),
    field({ label: 'Auth user name', name: 'auth_username', value: r.auth_username || '' }),
    passwordField(t),
    field({ label: 'Media encryption', name: 'media_encryption', kind: 'select', options: ENCRYPTION, value: enumValue(r.media_encryption, ENCRYPTION[0][0]) }),
    field({ label: 'Metadata', name: 'metadata', value: r.metadata || '' }),
  ];
}

function outboundFromForm(base, form) {
  return {
    ...base,
    name: value(form, 'name'),
    address: value(form, 'address'),
    transport: value(form, 'transport'),
    numbers: words(value(form, 'numbers')),
    destination_country: value(form, 'destination_country'),
    from_host: value(form, 'from_host'),
    auth_username: value(form, 'auth_username'),
    auth_password: value(form, 'auth_password'),
    media_encryption: value(form, 'media_encryption'),
    metadata: value(form, 'metadata'),
  };
}

function auth(t) {
  return t.auth_username ? `digest: ${t.auth_username}` : '—';
}

/** The trunks page. */
export function trunksPage(main) {
  replace(main,
    title('Trunks'),
    section({
      id: 'inbound-heading',
      heading: 'Inbound trunks',
      intro: 'Which calls switchboard accepts: by called number, source address and credentials.',
      what: 'inbound trunk',
      key: (t) => t.sip_trunk_id,
      list: async () => (await sip('ListSIPInboundTrunk', {})).items || [],
      columns: [
        ['ID', (t) => h('code', {}, t.sip_trunk_id)],
        ['Name', (t) => t.name || '—'],
        ['Numbers', (t) => joined(t.numbers)],
        ['Allowed addresses', (t) => joined(t.allowed_addresses)],
        ['Auth', auth],
      ],
      fields: inboundFields,
      create: (form) => sip('CreateSIPInboundTrunk', { trunk: inboundFromForm({}, form) }),
      update: (t, form) => sip('UpdateSIPInboundTrunk', { sip_trunk_id: t.sip_trunk_id, replace: inboundFromForm(t, form) }),
      remove: (t) => sip('DeleteSIPTrunk', { sip_trunk_id: t.sip_trunk_id }),
    }),
    section({
      id: 'outbound-heading',
      heading: 'Outbound trunks',
      intro: 'Where CreateSIPParticipant sends calls.',
      what: 'outbound trunk',
      key: (t) => t.sip_trunk_id,
      list: async () => (await sip('ListSIPOutboundTrunk', {})).items || [],
      columns: [
        ['ID', (t) => h('code', {}, t.sip_trunk_id)],
        ['Name', (t) => t.name || '—'],
        ['Address', (t) => t.address || '—'],
        ['Numbers', (t) => joined(t.numbers)],
        ['Auth', auth],
      ],
      fields: outboundFields,
      create: (form) => sip('CreateSIPOutboundTrunk', { trunk: outboundFromForm({}, form) }),
      update: (t, form) => sip('UpdateSIPOutboundTrunk', { sip_trunk_id: t.sip_trunk_id, replace: outboundFromForm(t, form) }),
      remove: (t) => sip('DeleteSIPTrunk', { sip_trunk_id: t.sip_trunk_id }),
    }));
}

// ---------------------------------------------------------------- rules

const RULE_KINDS = [
  ['dispatch_rule_direct', 'Direct: every call into one room'],
  ['dispatch_rule_individual', 'Individual: a new room per caller'],
  ['dispatch_rule_callee', 'Callee: a room per called number'],
];

function ruleKind(r) {
  const rule = (r && r.rule) || {};
  return RULE_KINDS.map(([k]) => k).find((k) => rule[k]) || 'dispatch_rule_direct';
}

function ruleSummary(r) {
  const kind = ruleKind(r);
  const body = (r.rule && r.rule[kind]) || {};
  const pin = body.pin ? ' (PIN)' : '';
  if (kind === 'dispatch_rule_direct') return `direct → room ${body.room_name || '—'}${pin}`;
  if (kind === 'dispatch_rule_individual') return `individual, rooms ${body.room_prefix || ''}…${pin}`;
  return `callee, rooms ${body.room_prefix || ''}<number>${pin}`;
}

function ruleFields(trunks) {
  return (r) => {
    const rec = r || {};
    const kind = ruleKind(r);
    const body = (rec.rule && rec.rule[kind]) || {};
    const chosen = new Set(rec.trunk_ids || []);
    const known = new Set(trunks.map((t) => t.sip_trunk_id));
    const boxes = [
      ...trunks.map((t) => [t.sip_trunk_id, `${t.sip_trunk_id}${t.name ? ` (${t.name})` : ''}`]),
      // A rule may name a trunk that is gone: shown, so an edit keeps or drops it knowingly.
      ...[...chosen].filter((id) => !known.has(id)).map((id) => [id, `${id} (no such trunk)`]),
    ];
    const trunkSet = h('fieldset', { class: 'field wide' },
      h('legend', {}, 'Trunks'),
      boxes.length
        ? boxes.map(([id, label]) => field({ label, name: `trunk:${id}`, kind: 'checkbox', value: chosen.has(id) }))
        : h('p', { class: 'hint' }, 'No inbound trunks yet.'),
      h('p', { class: 'hint' }, 'None ticked: the rule applies to calls on any trunk.'));
    const kindField = field({ label: 'Rule', name: 'kind', kind: 'select', options: RULE_KINDS, value: kind });
    const room = field({ label: 'Room name', name: 'room_name', value: body.room_name || '' });
    const prefix = field({ label: 'Room prefix', name: 'room_prefix', value: body.room_prefix || '' });
    const randomize = field({ label: 'Random suffix on callee rooms', name: 'randomize', kind: 'checkbox', value: Boolean(body.randomize) });
    const noRandomness = field({ label: 'No random suffix on caller rooms', name: 'no_randomness', kind: 'checkbox', value: Boolean(body.no_randomness) });
    const show = () => {
      const k = kindField.querySelector('select').value;
      room.hidden = k !== 'dispatch_rule_direct';
      prefix.hidden = k === 'dispatch_rule_direct';
      randomize.hidden = k !== 'dispatch_rule_callee';
      noRandomness.hidden = k !== 'dispatch_rule_individual';
    };
    kindField.querySelector('select').addEventListener('change', show);
    show();
    return [
      field({ label: 'Name', name: 'name', value: rec.name || '' }),
      kindField, room, prefix, randomize, noRandomness,
      field({ label: 'PIN', name: 'pin', value: body.pin || '', inputmode: 'numeric', hint: 'Callers enter it before joining; optional.' }),
      trunkSet,
      field({ label: 'Called numbers', name: 'numbers', value: (rec.numbers || []).join(', '), hint: 'Only calls to these numbers; empty: any.' }),
      field({ label: 'Caller numbers', name: 'inbound_numbers', value: (rec.inbound_numbers || []).join(', '), hint: 'Only calls from these numbers; empty: any.' }),
      field({ label: 'Hide the caller\'s number in the room', name: 'hide_phone_number', kind: 'checkbox', value: Boolean(rec.hide_phone_number) }),
      field({ label: 'Metadata', name: 'metadata', value: rec.metadata || '' }),
    ];
  };
}

function ruleFromForm(base, form) {
  const kind = value(form, 'kind');
  const body = { pin: value(form, 'pin') };
  if (kind === 'dispatch_rule_direct') {
    body.room_name = value(form, 'room_name');
  } else {
    body.room_prefix = value(form, 'room_prefix');
    if (kind === 'dispatch_rule_callee') body.randomize = value(form, 'randomize');
    else body.no_randomness = value(form, 'no_randomness');
  }
  const trunkIds = [...form.querySelectorAll('input[type=checkbox][name^="trunk:"]')]
    .filter((b) => b.checked).map((b) => b.name.slice('trunk:'.length));
  return {
    ...base,
    name: value(form, 'name'),
    rule: { [kind]: body },
    trunk_ids: trunkIds,
    numbers: words(value(form, 'numbers')),
    inbound_numbers: words(value(form, 'inbound_numbers')),
    hide_phone_number: value(form, 'hide_phone_number'),
    metadata: value(form, 'metadata'),
  };
}

/** The dispatch rules page. */
export async function rulesPage(main) {
  // The heading stays put while the trunks load, so focus stays on it.
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  replace(main, title('Dispatch rules'), body);
  let trunks = [];
  const trunkError = errorBox();
  try {
    trunks = (await sip('ListSIPInboundTrunk', {})).items || [];
  } catch (e) {
    showError(trunkError, e);
  }
  const names = new Map(trunks.map((t) => [t.sip_trunk_id, t.name]));
  replace(body,
    trunkError,
    section({
      id: 'rules-heading',
      heading: 'Rules',
      intro: 'Which room an accepted call joins.',
      what: 'dispatch rule',
      key: (r) => r.sip_dispatch_rule_id,
      list: async () => (await sip('ListSIPDispatchRule', {})).items || [],
      columns: [
        ['ID', (r) => h('code', {}, r.sip_dispatch_rule_id)],
        ['Name', (r) => r.name || '—'],
        ['Rule', ruleSummary],
        ['Trunks', (r) => (r.trunk_ids && r.trunk_ids.length
          ? r.trunk_ids.map((id) => (names.get(id) ? `${id} (${names.get(id)})` : id)).join(', ')
          : 'any')],
      ],
      fields: ruleFields(trunks),
      create: (form) => sip('CreateSIPDispatchRule', { dispatch_rule: ruleFromForm({}, form) }),
      update: (r, form) => sip('UpdateSIPDispatchRule', { sip_dispatch_rule_id: r.sip_dispatch_rule_id, replace: ruleFromForm(r, form) }),
      remove: (r) => sip('DeleteSIPDispatchRule', { sip_dispatch_rule_id: r.sip_dispatch_rule_id }),
    }));
}

// ---------------------------------------------------------------- explain

function passedOver(list) {
  return table('Passed over', [
    ['Kind', (p) => (p.kind === 'dispatch_rule' ? 'rule' : 'trunk')],
    ['ID', (p) => h('code', {}, p.id)],
    ['Name', (p) => p.name || '—'],
    ['Why not', (p) => p.reason],
  ], list || [], { empty: 'Nothing passed over.' });
}

/** The ExplainCall page. */
export function explainPage(main) {
  const error = errorBox();
  const result = h('section', { class: 'result', 'aria-live': 'polite', 'aria-labelledby': 'explain-result' });
  const form = h('form', { class: 'card', novalidate: true, 'aria-label': 'Call to explain' },
    h('div', { class: 'fields-grid' },
      field({ label: 'From (caller)', name: 'from', placeholder: '+15550199' }),
      field({ label: 'To (called number)', name: 'to', placeholder: '+15550100' }),
      field({ label: 'Source IP', name: 'source_ip', placeholder: '203.0.113.5', hint: 'Empty skips the allowed-address check.' }),
      field({ label: 'From host', name: 'from_host', placeholder: 'sip.carrier.example' }),
      field({ label: 'Request-URI user', name: 'request_uri_user', hint: 'Reported when it would match where To does not.' }),
      field({ label: 'PIN entered', name: 'pin', inputmode: 'numeric' }),
      field({ label: 'Caller pressed only #', name: 'no_pin', kind: 'checkbox' })),
    error,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Explain')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await busy(form, async () => {
      const body = {
        from: value(form, 'from'),
        to: value(form, 'to'),
        source_ip: value(form, 'source_ip'),
        from_host: value(form, 'from_host'),
        request_uri_user: value(form, 'request_uri_user'),
        no_pin: value(form, 'no_pin'),
      };
      if (value(form, 'pin')) body.pin = value(form, 'pin');
      try {
        const answer = await switchboard('ExplainCall', body);
        showError(error, null);
        const trunk = answer.trunk || {};
        const d = answer.dispatch;
        replace(result,
          h('h2', { id: 'explain-result' }, 'Answer'),
          h('p', { class: answer.accepted ? 'verdict ok' : 'verdict refused' }, answer.verdict),
          h('h3', {}, 'Trunk'),
          h('p', {}, trunk.id ? h('code', {}, trunk.id) : 'no trunk', ` — match: ${trunk.match}`,
            trunk.digest_auth ? ', with a digest challenge' : ''),
          trunk.error ? h('p', { class: 'refusal' }, trunk.error) : null,
          passedOver(trunk.passed_over),
          h('h3', {}, 'Dispatch rule'),
          d ? [
            h('p', {}, d.rule_id ? h('code', {}, d.rule_id) : 'no rule',
              d.room_name ? ` → room ${d.room_name}` : '',
              d.request_pin ? ' (asks for the PIN)' : ''),
            d.participant_identity ? h('p', {}, `Participant ${d.participant_identity} (${d.participant_name})`) : null,
            d.error ? h('p', { class: 'refusal' }, d.error) : null,
            passedOver(d.passed_over),
          ] : h('p', {}, 'Not reached: the trunk step refused the call.'));
      } catch (e) {
        showError(error, e);
      }
    });
  });
  replace(main,
    title('Explain a call'),
    h('p', { class: 'intro' }, 'How this replica\'s live routing would take a call, and why every other trunk and rule would not.'),
    form, result);
}
