// fetch.js against a live agent: the page comes back through the SOCKS5 listener byte-exact.
// The driver (tests/examples/examples_test.py) starts the agents and sets the ALKNET_* variables.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through tests/examples/examples_test.py)`);
  return value;
}

test('fetch.js returns the page through the agent\'s SOCKS5 byte for byte', () => {
  const body = execFileSync(process.execPath,
    [path.join(__dirname, '..', 'fetch.js'), '--socks', need('ALKNET_SOCKS'), need('ALKNET_TEST_URL')],
    { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const expected = fs.readFileSync(need('ALKNET_TEST_EXPECTED'));
  assert.strictEqual(body.length, expected.length);
  assert.ok(body.equals(expected), 'body differs from the served file');
});
