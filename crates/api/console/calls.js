// Calls: those in progress (polled every second, hung up or transferred
// from here), the history with filters and pages, and one call with its
// record, quality, transfer and SIP ladder.

import { get, sip, switchboard } from './api.js';
import {
  busy, duration, enumWords, errorBox, facts, field, h, nsDate, replace, showError,
  statusLine, table, title, uri, when,
} from './ui.js';
import { parseTrace, renderLadder } from './ladder.js';

const POLL_MS = 1000;

function callLink(id) {
  return h('a', { href: `#/calls/${encodeURIComponent(id)}` }, h('code', {}, id));
}

function direction(info) {
  return enumWords(info.call_direction, 'SCD_');
}

// ---------------------------------------------------------------- live

function transferForm(info, rowError) {
  const said = statusLine();
  const form = h('form', { class: 'transfer', novalidate: true, hidden: true, 'aria-label': `Transfer call ${info.call_id}` },
    field({ label: 'Transfer to', name: 'transfer_to', placeholder: 'sip:+15550123@pbx.example', hint: 'A sip:, sips: or tel: URI; the caller hears ringing meanwhile.' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Transfer')),
    said);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    said.textContent = 'Transferring…';
    await busy(form, async () => {
      try {
        // Transfers need sip.call and room admin of the call's very room.
        await sip('TransferSIPParticipant', {
          room_name: info.room_name,
          participant_identity: info.participant_identity,
          transfer_to: form.elements.namedItem('transfer_to').value.trim(),
          play_dialtone: true,
        }, { video: { roomAdmin: true, room: info.room_name } });
        showError(rowError, null);
        said.textContent = 'Transferred.';
      } catch (e) {
        said.textContent = '';
        showError(rowError, e);
      }
    });
  });
  return form;
}

function liveRow(call) {
  const info = call.info || {};
  const id = info.call_id;
  const status = h('td', { dataset: { label: 'Status' } });
  const rowError = errorBox();
  const hangUp = h('button', { type: 'button', class: 'danger', 'aria-label': `Hang up call ${id}` }, 'Hang up');
  const transferToggle = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-label': `Transfer call ${id}` }, 'Transfer…');
  const transfer = transferForm(info, rowError);
  hangUp.addEventListener('click', async () => {
    hangUp.disabled = true;
    hangUp.textContent = 'Hanging up…';
    try {
      await switchboard('HangUpCall', { call_id: id });
      showError(rowError, null);
    } catch (e) {
      showError(rowError, e);
      hangUp.disabled = false;
      hangUp.textContent = 'Hang up';
    }
  });
  transferToggle.addEventListener('click', () => {
    const open = transfer.hidden;
    transfer.hidden = !open;
    transferToggle.setAttribute('aria-expanded', String(open));
    if (open) transfer.querySelector('input').focus();
  });
  const started = nsDate(info.created_at_ns);
  const tr = h('tr', { dataset: { callId: id } },
    h('td', { dataset: { label: 'Call' } }, callLink(id)),
    h('td', { dataset: { label: 'Direction' } }, direction(info)),
    h('td', { dataset: { label: 'From' } }, uri(info.from_uri)),
    h('td', { dataset: { label: 'To' } }, uri(info.to_uri)),
    h('td', { dataset: { label: 'Room' } }, info.room_name || '—'),
    status,
    h('td', { dataset: { label: 'Since' } }, started ? started.toLocaleTimeString() : '—'),
    h('td', { dataset: { label: 'Actions' } },
      h('div', { class: 'row-actions' }, hangUp, transferToggle), transfer, rowError));
  const update = (c) => {
    const text = enumWords((c.info || {}).call_status, 'SCS_');
    if (status.textContent !== text) status.textContent = text;
  };
  update(call);
  return { tr, update };
}

/** The live calls page; answers a function that stops its polling. */
export function livePage(main) {
  const error = errorBox();
  const summary = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }, 'Loading…');
  const tbody = h('tbody', { 'aria-live': 'polite', 'aria-relevant': 'additions removals' });
  const grid = h('table', { class: 'grid', hidden: true },
    h('caption', { class: 'sr-only' }, 'Calls in progress'),
    h('thead', {}, h('tr', {}, ['Call', 'Direction', 'From', 'To', 'Room', 'Status', 'Since', 'Actions']
      .map((label) => h('th', { scope: 'col' }, label)))),
    tbody);
  const rows = new Map();
  let stopped = false;
  let timer = null;

  async function poll() {
    try {
      const answer = await switchboard('ListCalls', { live: true });
      if (stopped) return;
      showError(error, null);
      const calls = (answer.calls || []).filter((c) => c.info && c.info.call_id);
      const seen = new Set();
      for (const call of calls) {
        const id = call.info.call_id;
        seen.add(id);
        let row = rows.get(id);
        if (!row) {
          row = liveRow(call);
          rows.set(id, row);
        }
        row.update(call);
      }
      for (const [id, row] of rows) {
        if (!seen.has(id)) {
          row.tr.remove();
          rows.delete(id);
        }
      }
      // Newest first, moving only rows that are out of place so that focus and open forms stay.
      calls.map((c) => rows.get(c.info.call_id).tr).forEach((tr, i) => {
        if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      });
      grid.hidden = rows.size === 0;
      const text = rows.size === 0 ? 'No calls in progress.' : `${rows.size} call${rows.size === 1 ? '' : 's'} in progress.`;
      if (summary.textContent !== text) summary.textContent = text;
    } catch (e) {
      if (!stopped) showError(error, e);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  replace(main, title('Live calls'),
    h('p', { class: 'intro' }, 'Calls in progress on this replica, refreshed every second.'),
    error, summary, h('div', { class: 'list' }, grid));
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---------------------------------------------------------------- history

const FILTERS = ['direction', 'result', 'room', 'trunk_id', 'number'];

function ended(call) {
  const info = call.info || {};
  const reason = info.disconnect_reason && info.disconnect_reason !== 'UNKNOWN_REASON' ? info.disconnect_reason : '';
  const status = call.sip_status ? `SIP ${call.sip_status}` : '';
  return [reason, status].filter(Boolean).join(', ') || '—';
}

/** The call history page; `query` holds the filters and the page token. */
export async function historyPage(main, query) {
  const error = errorBox();
  const list = h('div', { class: 'list', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const form = h('form', { class: 'card filters', novalidate: true, role: 'search', 'aria-label': 'Filter calls' },
    h('div', { class: 'fields-grid' },
      field({ label: 'Direction', name: 'direction', kind: 'select', options: [['', 'Any'], ['inbound', 'Inbound'], ['outbound', 'Outbound']], value: query.get('direction') || '' }),
      field({ label: 'Result', name: 'result', kind: 'select', options: [['', 'Any'], ['answered', 'Answered'], ['failed', 'Failed'], ['refused', 'Refused'], ['cancelled', 'Cancelled']], value: query.get('result') || '' }),
      field({ label: 'Room', name: 'room', value: query.get('room') || '' }),
      field({ label: 'Trunk ID', name: 'trunk_id', value: query.get('trunk_id') || '' }),
      field({ label: 'Number', name: 'number', value: query.get('number') || '', hint: 'Caller or called.' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      const v = form.elements.namedItem(name).value.trim();
      if (v) next.set(name, v);
    }
    const target = `#/history${next.toString() ? `?${next}` : ''}`;
    if (window.location.hash === target) {
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } else {
      window.location.hash = target;
    }
  });
  replace(main, title('Call history'), form, error, list);

  const body = {};
  for (const name of FILTERS) {
    if (query.get(name)) body[name] = query.get(name);
  }
  if (query.get('page_token')) body.page_token = query.get('page_token');
  try {
    const answer = await switchboard('ListCalls', body);
    const calls = answer.calls || [];
    const older = new URLSearchParams(query);
    older.set('page_token', answer.next_page_token || '');
    const newest = new URLSearchParams(query);
    newest.delete('page_token');
    list.removeAttribute('aria-busy');
    replace(list,
      table('Finished calls, newest first', [
        ['Ended', (c) => when(nsDate(c.info.ended_at_ns))],
        ['Call', (c) => callLink(c.info.call_id)],
        ['Direction', (c) => direction(c.info)],
        ['From', (c) => uri(c.info.from_uri)],
        ['To', (c) => uri(c.info.to_uri)],
        ['Room', (c) => c.info.room_name || '—'],
        ['Result', (c) => c.result || '—'],
        ['Ended by', ended],
        ['Talk time', (c) => duration(nsDate(c.info.started_at_ns), nsDate(c.info.ended_at_ns))],
      ], calls.filter((c) => c.info), { empty: 'No calls match.', key: (c) => c.info.call_id }),
      h('nav', { class: 'pager', 'aria-label': 'Pages' },
        query.get('page_token') ? h('a', { href: `#/history${newest.toString() ? `?${newest}` : ''}` }, 'Newest calls') : null,
        answer.next_page_token ? h('a', { href: `#/history?${older}` }, 'Older calls') : null));
  } catch (e) {
    list.removeAttribute('aria-busy');
    replace(list);
    showError(error, e);
  }
}

// ---------------------------------------------------------------- one call

async function save(path, filename, error) {
  try {
    const response = await get(path);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    // The download has taken the blob by the time this runs.
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    showError(error, null);
  } catch (e) {
    showError(error, e);
  }
}

function quality(q) {
  if (!q) return h('p', { class: 'muted' }, 'No RTP figures (the call had no media).');
  return facts([
    ['Packets sent', q.packets_sent],
    ['Packets received', q.packets_received],
    ['Packets lost', q.packets_lost],
    ['Jitter', `${q.jitter_ms} ms`],
    ['Concealed frames', q.concealed_frames],
    ['Round trip', q.round_trip_ms ? `${q.round_trip_ms} ms` : '—'],
    ['Lost (peer\'s report)', q.remote_packets_lost],
    ['Jitter (peer\'s report)', `${q.remote_jitter_ms} ms`],
    ['SRTP packets rejected', q.srtp_rejected],
    ['RTCP reports received', q.rtcp_received],
  ].map(([k, v]) => [k, String(v ?? '—')]));
}

/** A SIPStatus as protojson writes it ({"code": "SIP_STATUS_…", "status": "…"}) in words. */
function sipStatus(s) {
  if (!s) return '—';
  const code = typeof s.code === 'number' ? String(s.code) : enumWords(s.code, 'SIP_STATUS_');
  return [code === '—' ? '' : code, s.status || ''].filter(Boolean).join(': ') || '—';
}

function transferFacts(t) {
  const started = nsDate(t.transfer_initiated_at_ns);
  const done = nsDate(t.transfer_completed_at_ns);
  return facts([
    ['Transfer ID', t.transfer_id || '—'],
    ['To', t.transfer_to || '—'],
    ['Status', enumWords(t.transfer_status, '')],
    ['SIP status', sipStatus(t.transfer_status_code)],
    ['Started', when(started)],
    ['Completed', when(done)],
    ['Error', t.error || '—'],
  ]);
}

/** One call's page. */
export async function callPage(main, callId) {
  const error = errorBox();
  // The heading stays put while the call loads, so focus stays on it.
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  replace(main, title(`Call ${callId}`), body);
  let call;
  try {
    call = await switchboard('GetCall', { call_id: callId });
  } catch (e) {
    replace(body, h('p', {}, h('a', { href: '#/history' }, 'Call history')), error);
    showError(error, e);
    return;
  }
  const info = call.info || {};
  const created = nsDate(info.created_at_ns);
  const ringing = nsDate(call.ringing_at_ns);
  const answered = nsDate(info.started_at_ns);
  const endedAt = nsDate(info.ended_at_ns);
  // sip_status is the number; call_status_code.code is protojson's enum name.
  const statusText = (info.call_status_code && info.call_status_code.status) || '';
  const status = call.sip_status ? `${call.sip_status} ${statusText}`.trim() : (statusText || '—');
  const record = facts([
    ['State', call.live ? `in progress (${enumWords(info.call_status, 'SCS_')})` : enumWords(info.call_status, 'SCS_')],
    ['Direction', direction(info)],
    ['From', uri(info.from_uri)],
    ['To', uri(info.to_uri)],
    ['Room', info.room_name || '—'],
    ['Participant', info.participant_identity || '—'],
    ['Trunk', info.trunk_id || '—'],
    ['Dispatch rule', info.dispatch_rule_id || '—'],
    ['Started', when(created)],
    ['Ringing', when(ringing)],
    ['Answered', when(answered)],
    ['Ended', when(endedAt)],
    ['Talk time', duration(answered, endedAt)],
    ['Result', call.result || '—'],
    ['Final SIP status', status],
    ['Ended because', enumWords(info.disconnect_reason, '')],
    ['Error', info.error || '—'],
    ['Transport', call.transport || '—'],
    ['Remote address', call.remote_address || '—'],
    ['Codec', info.audio_codec || '—'],
    ['Media encryption', call.srtp_suite || info.media_encryption || 'none'],
    ['SIP Call-ID', info.sip_call_id || '—'],
  ]);
  const traceError = errorBox();
  const ladderBox = h('div', { class: 'ladder-box', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading the trace…'));
  const base = `/calls/${encodeURIComponent(callId)}/trace`;
  const downloads = h('div', { class: 'actions' },
    h('button', { type: 'button', on: { click: () => save(`${base}?format=text`, `${callId}.txt`, traceError) } }, 'Download text trace'),
    h('button', { type: 'button', on: { click: () => save(`${base}?format=pcap`, `${callId}.pcap`, traceError) } }, 'Download pcap'));
  replace(body,
    h('p', {}, h('a', { href: '#/history' }, 'Call history'), call.live ? [' · ', h('a', { href: '#/live' }, 'Live calls')] : null),
    error,
    h('section', { class: 'section', 'aria-labelledby': 'call-record' }, h('h2', { id: 'call-record' }, 'Record'), record),
    h('section', { class: 'section', 'aria-labelledby': 'call-quality' }, h('h2', { id: 'call-quality' }, 'Quality'), quality(call.quality)),
    call.transfer ? h('section', { class: 'section', 'aria-labelledby': 'call-transfer' }, h('h2', { id: 'call-transfer' }, 'Transfer'), transferFacts(call.transfer)) : null,
    h('section', { class: 'section', 'aria-labelledby': 'call-ladder' },
      h('h2', { id: 'call-ladder' }, 'SIP ladder'),
      h('p', { class: 'intro' }, `${call.trace_messages || 0} messages${call.trace_truncated ? ' (cut at the size cap)' : ''}. Press an arrow to read its message.`),
      downloads, traceError, ladderBox));
  try {
    const response = await get(`${base}?format=text`);
    const text = await response.text();
    ladderBox.removeAttribute('aria-busy');
    replace(ladderBox, renderLadder(parseTrace(text)));
  } catch (e) {
    ladderBox.removeAttribute('aria-busy');
    replace(ladderBox);
    showError(traceError, e);
  }
}
