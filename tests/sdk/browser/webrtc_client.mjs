// livekit-client (the official JS SDK, its UMD bundle) in Debian's headless
// Chromium, driven by playwright-core: a page this script serves joins a
// switchboard room, publishes a WebAudio oscillator as its microphone,
// listens to every remote audio track through an AnalyserNode, and reports
// what it saw and heard. Used by crates/switchboard/tests/webrtc.rs.
//
// Usage: node webrtc_client.mjs URL TOKEN TONE_HZ SECONDS
// Prints one JSON line: {connected, published, remotes: {identity: {kind,
// hz, db}}, state, console} or {error}.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../package.json', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const [url, token, toneHz, seconds] = process.argv.slice(2);

function fail(message) {
  console.log(JSON.stringify({ error: message }));
  process.exit(1);
}

if (!url || !token || !toneHz || !seconds) fail('usage: webrtc_client.mjs URL TOKEN TONE_HZ SECONDS');
if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: install Debian's chromium package`);
let chromium;
let bundle;
try {
  ({ chromium } = require('playwright-core'));
  // The package exports only its ESM and CJS entry points; the UMD bundle
  // sits beside them.
  const main = require.resolve('livekit-client');
  bundle = fs.readFileSync(path.join(path.dirname(main), 'livekit-client.umd.js'));
} catch (e) {
  fail(`${e.message}: tests/run installs tests/deps/*.npm into tests/sdk/node_modules`);
}

// The test page and the SDK, from one origin the browser trusts for media.
const server = http.createServer((req, res) => {
  if (req.url === '/livekit-client.umd.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(bundle);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><script src="/livekit-client.umd.js"></script><p>test page</p>');
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const page_url = `http://127.0.0.1:${server.address().port}/`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-livekit-client-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required', '--use-fake-ui-for-media-stream'],
});
let result;
try {
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`.slice(0, 300)));
  await page.goto(page_url);
  result = await page.evaluate(async ({ url, token, toneHz, seconds }) => {
    const { Room, RoomEvent, LocalAudioTrack, Track } = window.LivekitClient;
    const audio = new AudioContext();
    const room = new Room();
    const listening = {};
    room.on(RoomEvent.TrackSubscribed, (track, publication, participant) => {
      if (track.kind !== 'audio') return;
      // Chromium feeds a remote track to WebAudio only while it also plays
      // in a media element.
      const element = track.attach();
      element.muted = true;
      document.body.appendChild(element);
      const source = audio.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
      const analyser = audio.createAnalyser();
      analyser.fftSize = 8192;
      source.connect(analyser);
      listening[participant.identity] = { analyser, kind: participant.kind };
    });
    const started = performance.now();
    await room.connect(url, token);
    const connected = (performance.now() - started) / 1000;
    const oscillator = audio.createOscillator();
    oscillator.frequency.value = toneHz;
    const gain = audio.createGain();
    gain.gain.value = 0.3;
    const destination = audio.createMediaStreamDestination();
    oscillator.connect(gain).connect(destination);
    oscillator.start();
    const track = new LocalAudioTrack(destination.stream.getAudioTracks()[0]);
    const publication = await room.localParticipant.publishTrack(track, { source: Track.Source.Microphone });
    // Each remote's loudest moment, looked at four times a second (a
    // caller may hang up before the end).
    const remotes = {};
    const look = setInterval(() => {
      for (const [identity, { analyser, kind }] of Object.entries(listening)) {
        const bins = new Float32Array(analyser.frequencyBinCount);
        analyser.getFloatFrequencyData(bins);
        let peak = 1;
        for (let i = 2; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
        const db = Number.isFinite(bins[peak]) ? bins[peak] : -1000;
        if (!remotes[identity] || db > remotes[identity].db) {
          remotes[identity] = { kind, hz: (peak * audio.sampleRate) / analyser.fftSize, db };
        }
      }
    }, 250);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    clearInterval(look);
    const state = room.state;
    await room.disconnect();
    return { connected, published: publication.trackSid, remotes, state };
  }, { url, token, toneHz: Number(toneHz), seconds: Number(seconds) });
  result.console = logs.filter((l) => !l.startsWith('debug')).slice(-20);
} catch (e) {
  result = { error: String(e).slice(0, 2000) };
} finally {
  await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
  server.close();
}
console.log(JSON.stringify(result));
process.exit(result.error ? 1 : 0);
