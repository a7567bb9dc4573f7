// The console's entry point: sign-in, the navigation and the hash router
// (#/trunks, #/calls/SCL_…), so the server serves one page and every view
// has a URL that survives a reload.

import { canSign, clearSession, saveSession, session, twirp } from './api.js';
import { busy, errorBox, field, h, replace, showError, title } from './ui.js';
import { explainPage, rulesPage, trunksPage } from './routing.js';
import { carriersPage } from './carriers.js';
import { callPage, historyPage, livePage } from './calls.js';
import { bansPage } from './bans.js';

const PAGES = {
  trunks: ['Trunks', trunksPage],
  rules: ['Dispatch rules', rulesPage],
  carriers: ['Carrier trunks', carriersPage],
  explain: ['Explain a call', explainPage],
  live: ['Live calls', livePage],
  history: ['Call history', historyPage],
  bans: ['Bans', bansPage],
};
const DEFAULT_PAGE = 'trunks';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const whoKey = document.getElementById('who-key');
let stopPage = null;

function stop() {
  if (typeof stopPage === 'function') stopPage();
  stopPage = null;
}

function signInPage() {
  stop();
  nav.hidden = true;
  who.hidden = true;
  document.title = 'Sign in · switchboard console';
  const error = errorBox();
  if (!canSign()) {
    replace(main, title('Sign in'), h('div', { class: 'error', role: 'alert' },
      h('p', { class: 'msg' }, 'This browser withholds WebCrypto from this page because it is not a secure context (plain http to an address other than this machine). Open the console over https (api.tls) or through an SSH tunnel to 127.0.0.1.')));
    return;
  }
  const form = h('form', { class: 'card sign-in', novalidate: true, 'aria-label': 'Sign in' },
    field({ label: 'API key', name: 'key', autocomplete: 'username', required: true }),
    field({ label: 'API secret', name: 'secret', kind: 'password', autocomplete: 'current-password', required: true, hint: 'Kept in this tab only (sessionStorage) and never sent: the browser signs short-lived tokens with it.' }),
    error,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = form.elements.namedItem('key').value.trim();
    const secret = form.elements.namedItem('secret').value;
    await busy(form, async () => {
      try {
        // A cheap sip.admin call proves the key, the secret and the grant before they are kept.
        await twirp('switchboard.SIP', 'ListBans', {}, {}, { key, secret });
        saveSession(key, secret);
        showError(error, null);
        if (!window.location.hash.startsWith('#/')) {
          window.location.hash = `#/${DEFAULT_PAGE}`;
        }
        route(true);
      } catch (e) {
        showError(error, e);
      }
    });
  });
  replace(main, title('Sign in'),
    h('p', { class: 'intro' }, 'With an API key and secret of this switchboard: the development key printed at startup, or one of api.keys.'),
    form);
  form.querySelector('input').focus();
}

function parseHash() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [path, queryText = ''] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, query: new URLSearchParams(queryText) };
}

async function route(focus) {
  const credentials = session();
  if (!credentials) {
    signInPage();
    return;
  }
  stop();
  nav.hidden = false;
  who.hidden = false;
  whoKey.textContent = `Key ${credentials.key}`;
  const { parts, query } = parseHash();
  // Each view renders into its own element: a page still loading when the
  // user moves on writes into a detached one, never over the next page.
  const view = h('div', { class: 'view' });
  replace(main, view);
  let name = parts[0] || DEFAULT_PAGE;
  let stopper = null;
  const rendering = (async () => {
    if (name === 'calls' && parts[1]) {
      document.title = `Call ${parts[1]} · switchboard console`;
      markNav('history');
      return callPage(view, parts[1]);
    }
    if (!PAGES[name]) name = DEFAULT_PAGE;
    const [label, page] = PAGES[name];
    document.title = `${label} · switchboard console`;
    markNav(name);
    return page(view, query);
  })();
  if (focus) {
    const heading = view.querySelector('h1');
    if (heading) heading.focus();
  }
  stopper = await rendering;
  if (typeof stopper === 'function') {
    if (view.isConnected) stopPage = stopper;
    else stopper();
  }
}

function markNav(name) {
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === `#/${name}`) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
}

document.getElementById('sign-out').addEventListener('click', () => {
  clearSession();
  window.history.replaceState(null, '', window.location.pathname);
  signInPage();
});

window.addEventListener('hashchange', () => {
  // "#main" is the skip link's target, not a page.
  if (window.location.hash.startsWith('#/') || window.location.hash === '') {
    route(true);
  }
});

route(false);
