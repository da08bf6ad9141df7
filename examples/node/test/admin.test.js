// admin.js against a live agent: a key added over gRPC (Unix socket) is listed as an API key.
// The driver (tests/examples/examples_test.py) then logs in with it using a stock ssh.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through tests/examples/examples_test.py)`);
  return value;
}

function admin(...args) {
  return execFileSync(process.execPath,
    [path.join(__dirname, '..', 'admin.js'), '--socket', need('ALKNET_ADMIN_SOCKET'), ...args],
    { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
}

test('admin.js adds a key and lists it', () => {
  const added = admin('add', need('ALKNET_TEST_PUBKEY'), '--comment', 'from-node');
  const match = /^added (SHA256:\S+) from-node$/m.exec(added);
  assert.ok(match, `unexpected add output: ${added}`);
  const listed = admin('list');
  const line = listed.split('\n').find((l) => l.startsWith(match[1] + ' '));
  assert.ok(line, `${match[1]} not in the list:\n${listed}`);
  assert.match(line, /^SHA256:\S+ ssh-ed25519 api from-node$/);
});
