// The console's only way to the server: the same API every other client
// uses. The browser signs its own access tokens (HS256 JWTs, as LiveKit's
// SDKs sign them) with the API secret, so the secret never leaves this tab:
// it is kept in sessionStorage (gone when the tab closes) and used only as
// an HMAC key here.

const STORAGE_KEY = 'switchboard.console.session';
// A token lives a minute: long enough for one request, short enough that a
// token seen in a proxy log or the browser's network panel is soon useless.
const TOKEN_SECONDS = 60;

/** An answer that was not a success, with the server's own words. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = '', fields = [] } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

/** The signed-in key and secret, or null. */
export function session() {
  try {
    const value = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
    if (value && typeof value.key === 'string' && typeof value.secret === 'string') {
      return value;
    }
  } catch {
    // A damaged entry is the same as none: the user signs in again.
  }
  return null;
}

/** Keeps the key and secret for this tab. */
export function saveSession(key, secret) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ key, secret }));
}

/** Forgets them. */
export function clearSession() {
  sessionStorage.removeItem(STORAGE_KEY);
  signingKey = null;
}

/** WebCrypto is there only in a secure context (https, or http to a loopback address). */
export function canSign() {
  return Boolean(globalThis.crypto && crypto.subtle);
}

let signingKey = null; // { secret, key: CryptoKey }

async function hmacKey(secret) {
  if (signingKey && signingKey.secret === secret) {
    return signingKey.key;
  }
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  signingKey = { secret, key };
  return key;
}

function base64url(bytes) {
  let binary = '';
  for (const b of bytes) {
    binary += String.fromCharCode(b);
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function base64urlJson(value) {
  return base64url(new TextEncoder().encode(JSON.stringify(value)));
}

/**
 * A fresh token for `credentials` (default: the session's) with the SIP
 * grants, and `extra` claims merged in (e.g. `video` for a room).
 */
export async function mintToken(extra = {}, credentials = session()) {
  if (!credentials) {
    throw new ApiError('Not signed in.');
  }
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: credentials.key,
    sub: 'switchboard-console',
    nbf: now,
    exp: now + TOKEN_SECONDS,
    sip: { admin: true, call: true },
    ...extra,
  };
  const input = `${base64urlJson({ alg: 'HS256', typ: 'JWT' })}.${base64urlJson(claims)}`;
  const key = await hmacKey(credentials.secret);
  const signature = await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(input));
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

/** The error an unsuccessful answer carries, in the server's words. */
async function failure(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: shown as it came.
  }
  // Twirp: {"code", "msg", "meta"}.
  if (body && typeof body.msg === 'string') {
    return new ApiError(body.msg, { status: response.status, code: body.code || '' });
  }
  // The /v1 API: {"error": {"code", "message", "fields": [{"field", "message"}]}}.
  if (body && body.error && typeof body.error.message === 'string') {
    return new ApiError(body.error.message, {
      status: response.status,
      code: body.error.code || '',
      fields: Array.isArray(body.error.fields) ? body.error.fields : [],
    });
  }
  return new ApiError(text.trim() || `HTTP ${response.status} ${response.statusText}`, {
    status: response.status,
  });
}

async function send(path, init) {
  let response;
  try {
    response = await fetch(path, { ...init, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(`Cannot reach switchboard: ${e.message}`);
  }
  if (!response.ok) {
    throw await failure(response);
  }
  return response;
}

/** A Twirp JSON call; `extra` claims go into its token. */
export async function twirp(service, method, body = {}, extra = {}, credentials = undefined) {
  const token = await mintToken(extra, credentials);
  const response = await send(`/twirp/${service}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return response.json();
}

/** `livekit.SIP/<method>`. */
export function sip(method, body, extra) {
  return twirp('livekit.SIP', method, body, extra);
}

/** `switchboard.SIP/<method>`. */
export function switchboard(method, body) {
  return twirp('switchboard.SIP', method, body);
}

/** A call of the /v1 carrier trunk API; answers the parsed body. */
export async function v1(method, path, body = undefined) {
  const token = await mintToken();
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A GET with the token in the Authorization header: the raw response. */
export async function get(path) {
  const token = await mintToken();
  return send(path, { headers: { Authorization: `Bearer ${token}` } });
}
