// A call's SIP ladder, drawn from the text trace that
// `GET /calls/{id}/trace` answers: each message is a header line
//   <time> <TRANSPORT> <local> -> | <- <remote> (<n> bytes)
// then the message itself and a blank line. `->` was sent by switchboard,
// `<-` received from the peer.

import { h, uid } from './ui.js';

const HEADER = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) ([A-Z0-9]+) (\S+) (->|<-) (\S+) \((\d+) bytes\)$/;
const TRUNCATED = /^\[trace truncated/;

/**
 * The messages of a text trace: [{at (Date), time (text), transport,
 * local, remote, sent, bytes, text, firstLine}], and whether it was cut.
 */
export function parseTrace(text) {
  const lines = String(text).split('\n');
  const messages = [];
  let truncated = false;
  let current = null;
  const finish = () => {
    if (current) {
      // Each message is followed by one blank line; its own lines end in CR LF.
      while (current.lines.length && current.lines[current.lines.length - 1].replace(/\r$/, '') === '') {
        current.lines.pop();
      }
      current.text = current.lines.map((l) => l.replace(/\r$/, '')).join('\n');
      current.firstLine = (current.lines[0] || '').replace(/\r$/, '');
      delete current.lines;
      messages.push(current);
    }
    current = null;
  };
  for (const line of lines) {
    const m = HEADER.exec(line);
    if (m) {
      finish();
      current = {
        time: m[1],
        at: new Date(m[1]),
        transport: m[2],
        local: m[3],
        sent: m[4] === '->',
        remote: m[5],
        bytes: Number(m[6]),
        lines: [],
      };
    } else if (TRUNCATED.test(line) && (!current || current.lines.at(-1) === '')) {
      truncated = true;
      finish();
    } else if (current) {
      current.lines.push(line);
    }
  }
  finish();
  return { messages, truncated };
}

/** What an arrow says: a request's method and URI, or a response's status. */
export function arrowLabel(firstLine) {
  const response = /^SIP\/2\.0 (\d{3})(?: (.*))?$/.exec(firstLine);
  if (response) {
    return response[2] ? `${response[1]} ${response[2]}` : response[1];
  }
  return firstLine.replace(/ SIP\/2\.0$/, '');
}

function offset(first, at) {
  const ms = at - first;
  return Number.isFinite(ms) ? `+${(ms / 1000).toFixed(3)} s` : '';
}

/** The ladder: two lifelines, one arrow per message; an arrow shows its message when pressed. */
export function renderLadder({ messages, truncated }) {
  if (!messages.length) {
    return h('p', { class: 'empty' }, 'The trace has no messages.');
  }
  const locals = [...new Set(messages.map((m) => m.local))];
  const remotes = [...new Set(messages.map((m) => m.remote))];
  const first = messages[0].at;
  const steps = messages.map((m, i) => {
    const detailId = uid('sip-message');
    const label = arrowLabel(m.firstLine);
    const pre = h('pre', { id: detailId, class: 'message', hidden: true, tabindex: '0', 'aria-label': `Message ${i + 1}` }, m.text);
    const button = h('button', {
      type: 'button',
      class: 'arrow-button',
      'aria-expanded': 'false',
      'aria-controls': detailId,
      on: {
        click: () => {
          const open = button.getAttribute('aria-expanded') !== 'true';
          button.setAttribute('aria-expanded', String(open));
          pre.hidden = !open;
        },
      },
    },
    h('span', { class: 'when' }, offset(first, m.at)),
    h('span', { class: 'arrow' },
      h('span', { class: 'sr-only' }, m.sent ? `switchboard to ${m.remote}: ` : `${m.remote} to switchboard: `),
      h('span', { class: 'label' }, label),
      remotes.length > 1 ? h('span', { class: 'peer' }, m.remote) : null));
    return h('li', { class: `step ${m.sent ? 'sent' : 'received'}`, dataset: { label } }, button, pre);
  });
  return h('div', { class: 'ladder' },
    h('div', { class: 'lanes', 'aria-hidden': 'true' },
      h('span', { class: 'when' }),
      h('span', { class: 'lane' }, h('strong', {}, 'switchboard'), h('small', {}, locals.join(', '))),
      h('span', { class: 'lane' }, h('strong', {}, 'peer'), h('small', {}, remotes.join(', ')))),
    h('ol', { class: 'steps', 'aria-label': `SIP messages between switchboard (${locals.join(', ')}) and ${remotes.join(', ')}` }, steps),
    truncated ? h('p', { class: 'hint' }, 'The trace was cut: later messages passed the per-call size cap.') : null);
}
