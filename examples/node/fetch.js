#!/usr/bin/env node
// Fetches one URL through an alknet agent's SOCKS5 listener and writes the body to stdout.
//
//   alknet-agent connect --server tcp://gw.example.org:22 ... --socks5 127.0.0.1:1080
//   node fetch.js --socks 127.0.0.1:1080 http://intranet/ > page.html
//
// socks5h:// sends the host name to the agent, so names are resolved on the far side of the
// tunnel (like curl --socks5-hostname). Works with Node.js 18 and later.
'use strict';

const http = require('node:http');
const https = require('node:https');
const { SocksProxyAgent } = require('socks-proxy-agent');

function usage() {
  process.stderr.write('usage: node fetch.js --socks HOST:PORT URL\n');
  process.exit(2);
}

// Resolves with the whole body as a Buffer; rejects on a non-2xx status or a socket error.
function fetchThroughSocks(url, socks) {
  const agent = new SocksProxyAgent(`socks5h://${socks}`);
  const client = new URL(url).protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = client.get(url, { agent }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => {
        if (response.statusCode < 200 || response.statusCode > 299) {
          reject(new Error(`HTTP ${response.statusCode} from ${url}`));
        } else {
          resolve(Buffer.concat(chunks));
        }
      });
      response.on('error', reject);
    });
    request.on('error', reject);
  });
}

async function main(argv) {
  let socks = '127.0.0.1:1080';
  let url = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--socks' && i + 1 < argv.length) socks = argv[++i];
    else if (!url && !argv[i].startsWith('--')) url = argv[i];
    else usage();
  }
  if (!url) usage();
  const body = await fetchThroughSocks(url, socks);
  process.stdout.write(body);
}

module.exports = { fetchThroughSocks };

if (require.main === module) {
  main(process.argv.slice(2)).catch((error) => {
    process.stderr.write(`fetch: ${error.message}\n`);
    process.exit(1);
  });
}
