#!/usr/bin/env node
// Runs the README walkthrough through @grpc/grpc-js with the contracts in
// proto/ loaded at run time by @grpc/proto-loader.
//
//   node node_client.js --root REPO_ROOT --auth HOST:PORT --crm HOST:PORT
//
// The npm packages come from REPO_ROOT/tools/node_modules (pinned in
// tools/package.json and tools/package-lock.json). The organization is
// created with REPO_ROOT/tools/crmctl.sh, which reaches the database through
// RUN_STATE_DIR and RUN_BUILD_DIR. Every step checks its result; the script
// stops at the first step that fails and exits 1.
'use strict';

const childProcess = require('node:child_process');
const path = require('node:path');
const { createRequire } = require('node:module');
const { parseArgs } = require('node:util');

const RPC_TIMEOUT_MS = 10000;
// Maximum time the CRM server may take to apply a rotation from its
// invalidation stream.
const APPLY_TIMEOUT_MS = 10000;

class StepFailed extends Error {}

function expect(condition, message) {
  if (!condition) throw new StepFailed(message);
}

function loadPackages(root) {
  const toolsRequire = createRequire(path.join(root, 'tools', 'package.json'));
  try {
    return {
      grpc: toolsRequire('@grpc/grpc-js'),
      protoLoader: toolsRequire('@grpc/proto-loader'),
    };
  } catch (error) {
    throw new StepFailed(`cannot load @grpc/grpc-js or @grpc/proto-loader from ${root}/tools/node_modules ` +
      `(${error.message}); install them with: npm ci --prefix tools`);
  }
}

function loadContracts(root, protoLoader, grpc) {
  const definition = protoLoader.loadSync(
    ['crm/auth/v1/private_app.proto', 'crm/data/v1/crm_service.proto', 'crm/data/v1/status.proto'],
    {
      // The proto/ folder, and Debian's libprotobuf-dev copies of the
      // google/protobuf well-known types that the contracts import.
      includeDirs: [path.join(root, 'proto'), '/usr/include'],
      keepCase: true,
      enums: String,
      longs: String,
      defaults: true,
    });
  return grpc.loadPackageDefinition(definition);
}

function bearer(grpc, credential) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${credential}`);
  return metadata;
}

// Calls a unary method and resolves with its response. On failure it rejects
// with the grpc-js ServiceError, whose `code` is a grpc.status value.
function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + RPC_TIMEOUT_MS);
    client[method](request, metadata, { deadline }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

async function expectRpcError(promise, grpc, expectedCode, description) {
  const expectedName = grpc.status[expectedCode];
  try {
    await promise;
  } catch (error) {
    if (error instanceof StepFailed) throw error;
    expect(error.code === expectedCode,
      `${description}: expected ${expectedName}, got ${grpc.status[error.code]}: ${error.details}`);
    return error;
  }
  throw new StepFailed(`${description}: expected ${expectedName}, but the call succeeded`);
}

function createOrganization(root) {
  const result = childProcess.spawnSync(
    path.join(root, 'tools', 'crmctl.sh'), ['create-organization', '--display_name=Polyglot Node'],
    { encoding: 'utf8', timeout: 60000 });
  expect(result.status === 0,
    `crmctl create-organization exited with ${result.status}: ${(result.stderr || '').trim()}`);
  const keys = result.stdout.split('\n')
    .filter((line) => line.startsWith('admin_key:'))
    .map((line) => line.slice('admin_key:'.length).trim());
  expect(keys.length === 1, 'crmctl create-organization printed no admin_key line');
  expect(keys[0].startsWith('crmadm_'), 'the admin key does not start with crmadm_');
  return keys[0];
}

// Waits until the CRM server's token-check cache cannot hold checks older
// than `sequence`: the server has applied it from its invalidation stream, or
// the stream is not current, so the server checks every token with the auth
// server.
async function waitUntilApplied(grpc, crmStatus, sequence) {
  const deadline = Date.now() + APPLY_TIMEOUT_MS;
  let applied = -1n;
  while (Date.now() < deadline) {
    const status = await call(crmStatus, 'GetServerStatus', {}, new grpc.Metadata());
    // int64 fields arrive as decimal strings (longs: String).
    applied = BigInt(status.applied_invalidation_sequence);
    if (applied >= sequence || status.watch_state !== 'WATCH_STATE_CURRENT') return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new StepFailed(`the CRM server did not apply invalidation sequence ${sequence} ` +
    `within ${APPLY_TIMEOUT_MS} ms (applied ${applied})`);
}

function sameLead(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function runWalkthrough(options) {
  const { grpc, protoLoader } = loadPackages(options.root);
  const contracts = loadContracts(options.root, protoLoader, grpc);
  const credentials = grpc.credentials.createInsecure();
  const apps = new contracts.crm.auth.v1.PrivateAppService(options.auth, credentials);
  const crm = new contracts.crm.data.v1.CrmService(options.crm, credentials);
  const crmStatus = new contracts.crm.data.v1.CrmStatusService(options.crm, credentials);

  try {
    // 1. An operator creates an organization.
    const adminKey = createOrganization(options.root);
    const admin = bearer(grpc, adminKey);
    console.log('ok: crmctl created an organization and printed its admin key');

    // 2. The admin creates an app with Lead Read and Lead Create.
    const created = await call(apps, 'CreatePrivateApp', {
      private_app: {
        display_name: 'Lead sync',
        description: 'Imports web leads',
        scopes: [
          { module: 'MODULE_LEAD', action: 'ACTION_CREATE' },
          { module: 'MODULE_LEAD', action: 'ACTION_READ' },
        ],
      },
    }, admin);
    const app = created.private_app;
    expect(app.id !== '', 'CreatePrivateApp returned an app without an id');
    expect(app.display_name === 'Lead sync', `CreatePrivateApp returned display_name ${app.display_name}`);
    // Scopes come back sorted by module, then action: READ before CREATE.
    const scopes = app.scopes.map((scope) => `${scope.module}:${scope.action}`).join(', ');
    expect(scopes === 'MODULE_LEAD:ACTION_READ, MODULE_LEAD:ACTION_CREATE',
      `CreatePrivateApp returned scopes ${scopes}`);
    expect(created.access_token.startsWith('crmpat_'), 'CreatePrivateApp returned no crmpat_ access token');
    expect(app.token_hint.endsWith(created.access_token.slice(-4)),
      "the token hint does not end with the token's last four characters");
    console.log(`ok: CreatePrivateApp created app ${app.id} with Lead Read and Lead Create`);

    // 3. Reveal the app's token.
    const token = (await call(apps, 'GetAccessToken', { id: app.id }, admin)).access_token;
    expect(token === created.access_token, 'GetAccessToken returned a token other than the one created');
    console.log('ok: GetAccessToken revealed the token CreatePrivateApp returned');

    // 4. The token creates and reads a lead.
    const lead = (await call(crm, 'CreateLead', {
      lead: { first_name: 'Ada', last_name: 'Lovelace', email: 'ada@example.com' },
    }, bearer(grpc, token))).lead;
    expect(lead.id !== '', 'CreateLead returned a lead without an id');
    expect(lead.last_name === 'Lovelace', `CreateLead returned last_name ${lead.last_name}`);
    expect(lead.status === 'LEAD_STATUS_NEW', `CreateLead returned status ${lead.status}, expected LEAD_STATUS_NEW`);
    expect(lead.create_time !== null, 'CreateLead returned no create_time');
    const fetched = (await call(crm, 'GetLead', { id: lead.id }, bearer(grpc, token))).lead;
    expect(sameLead(fetched, lead),
      `GetLead returned ${JSON.stringify(fetched)} instead of the created lead ${JSON.stringify(lead)}`);
    console.log(`ok: CreateLead created lead ${lead.id} and GetLead returned it`);

    // 5. Contacts are outside the app's scopes.
    const denied = await expectRpcError(call(crm, 'ListContacts', {}, bearer(grpc, token)),
      grpc, grpc.status.PERMISSION_DENIED, 'ListContacts without Contact Read');
    expect(denied.details.includes('CONTACT:READ'),
      `the denial does not name the missing scope CONTACT:READ: ${denied.details}`);
    console.log('ok: ListContacts failed with PERMISSION_DENIED naming CONTACT:READ');

    // 6. Rotate: the old token is rejected, the new one works.
    const rotated = await call(apps, 'RotateAccessToken', { id: app.id }, admin);
    const newToken = rotated.access_token;
    expect(newToken.startsWith('crmpat_'), 'RotateAccessToken returned no crmpat_ access token');
    expect(newToken !== token, 'RotateAccessToken returned the old token');
    expect(rotated.private_app.token_hint.endsWith(newToken.slice(-4)),
      'the token hint after rotation does not match the new token');
    // A CRM server that caches token checks rejects the old token once its
    // invalidation stream has delivered the rotation.
    await waitUntilApplied(grpc, crmStatus, BigInt(rotated.invalidation_sequence));
    await expectRpcError(call(crm, 'GetLead', { id: lead.id }, bearer(grpc, token)),
      grpc, grpc.status.UNAUTHENTICATED, 'GetLead with the rotated-away token');
    console.log('ok: GetLead with the old token failed with UNAUTHENTICATED');
    const refetched = (await call(crm, 'GetLead', { id: lead.id }, bearer(grpc, newToken))).lead;
    expect(sameLead(refetched, lead), 'GetLead with the new token returned another lead');
    console.log('ok: GetLead with the new token returned the lead');

    const revealedAgain = (await call(apps, 'GetAccessToken', { id: app.id }, admin)).access_token;
    expect(revealedAgain === newToken, 'GetAccessToken after rotation did not return the new token');
    console.log('ok: GetAccessToken after rotation revealed the new token');
  } finally {
    apps.close();
    crm.close();
    crmStatus.close();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      root: { type: 'string' },
      auth: { type: 'string' },
      crm: { type: 'string' },
    },
  });
  for (const name of ['root', 'auth', 'crm']) {
    if (!values[name]) {
      console.error(`usage: node_client.js --root REPO_ROOT --auth HOST:PORT --crm HOST:PORT (missing --${name})`);
      return 2;
    }
  }
  try {
    await runWalkthrough(values);
  } catch (error) {
    if (error instanceof StepFailed) {
      console.log(`FAIL: ${error.message}`);
    } else if (error.code !== undefined && error.details !== undefined) {
      // grpc-js puts the status name and details in the message, such as
      // "12 UNIMPLEMENTED: ...".
      console.log(`FAIL: a call failed: ${error.message}`);
    } else {
      console.log(`FAIL: ${error.stack}`);
    }
    return 1;
  }
  console.log('node_client: every walkthrough step returned what the README says');
  return 0;
}

main().then((code) => { process.exitCode = code; });
