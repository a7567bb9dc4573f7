// SIP sources banned by the security layer (docs/security.md), and lifting
// a ban: switchboard.SIP/ListBans and LiftBan.

import { switchboard } from './api.js';
import { errorBox, h, replace, showError, statusLine, table, title } from './ui.js';

/** The bans page. */
export function bansPage(main) {
  const error = errorBox();
  const said = statusLine();
  const list = h('div', { class: 'list' });
  const refresh = h('button', { type: 'button' }, 'Refresh');

  async function load() {
    try {
      const answer = await switchboard('ListBans', {});
      showError(error, null);
      replace(list, table('Banned sources', [
        ['Source', (b) => h('code', {}, b.ip)],
        ['Ends in', (b) => `${b.remaining_secs} s`],
        ['Why', (b) => b.reason],
        ['Actions', (b) => h('button', {
          type: 'button',
          'aria-label': `Lift the ban of ${b.ip}`,
          on: {
            click: async (event) => {
              event.target.disabled = true;
              try {
                const lifted = await switchboard('LiftBan', { ip: b.ip });
                said.textContent = lifted.lifted ? `Lifted the ban of ${lifted.ip}.` : `${lifted.ip} was not banned.`;
                await load();
              } catch (e) {
                showError(error, e);
                event.target.disabled = false;
              }
            },
          },
        }, 'Lift ban')],
      ], answer.bans || [], { empty: 'No source is banned.', key: (b) => b.ip }));
    } catch (e) {
      showError(error, e);
    }
  }

  refresh.addEventListener('click', () => {
    said.textContent = '';
    load();
  });
  replace(main,
    title('Bans'),
    h('p', { class: 'intro' }, 'Sources refused for flooding, failed authentication, calls to unknown numbers or a scanner\'s User-Agent. A ban ends by itself; lift it to let a source in at once.'),
    h('div', { class: 'actions' }, refresh),
    error, said, list);
  load();
}
