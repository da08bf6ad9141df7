#!/usr/bin/env node
// Adds and lists authorized keys over the alknet admin API (gRPC on the agent's Unix socket).
//
//   node admin.js --socket /var/lib/alknet/admin.sock add ~/.ssh/id_ed25519.pub [--comment laptop]
//   node admin.js --socket /var/lib/alknet/admin.sock list
//
// The service definitions are loaded at run time from the repository's proto/ files, as they
// are (--proto-dir, default ../../proto next to this file). Works with Node.js 18 and later.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function usage() {
  process.stderr.write(
    'usage: node admin.js --socket PATH [--proto-dir DIR] add PUBLIC_KEY_FILE [--comment TEXT]\n' +
    '       node admin.js --socket PATH [--proto-dir DIR] list\n');
  process.exit(2);
}

// A Keys client on unix:SOCKET. The socket path must be absolute for the unix: target.
function keysClient(socket, protoDir) {
  const definition = protoLoader.loadSync('alknet/admin/v1/keys.proto', {
    includeDirs: [protoDir],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const { Keys } = grpc.loadPackageDefinition(definition).alknet.admin.v1;
  return new Keys(`unix:${path.resolve(socket)}`, grpc.credentials.createInsecure());
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10000 }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

async function main(argv) {
  let socket = null;
  let protoDir = path.join(__dirname, '..', '..', 'proto');
  let comment = '';
  const words = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--socket' && i + 1 < argv.length) socket = argv[++i];
    else if (argv[i] === '--proto-dir' && i + 1 < argv.length) protoDir = argv[++i];
    else if (argv[i] === '--comment' && i + 1 < argv.length) comment = argv[++i];
    else if (argv[i].startsWith('--')) usage();
    else words.push(argv[i]);
  }
  if (!socket || words.length === 0) usage();
  const client = keysClient(socket, protoDir);
  try {
    if (words[0] === 'add' && words.length === 2) {
      const publicKey = fs.readFileSync(words[1], 'utf8').trim();
      const { key } = await call(client, 'AddKey', { public_key: publicKey, comment });
      process.stdout.write(`added ${key.fingerprint} ${key.comment}\n`);
    } else if (words[0] === 'list' && words.length === 1) {
      const { keys } = await call(client, 'ListKeys', {});
      for (const key of keys) {
        process.stdout.write(`${key.fingerprint} ${key.key_type} ${key.source} ${key.comment}\n`);
      }
    } else {
      usage();
    }
  } finally {
    client.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error) => {
    process.stderr.write(`admin: ${error.message}\n`);
    process.exit(1);
  });
}
