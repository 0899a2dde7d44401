// The partner's contract file, built from contracts/published alone (PARTNERS.md, "The
// contract document"): the AsyncAPI document's x- extensions plus the JSON Schema files,
// checked against contract.schema.json. Prints the list form on stdout, for `POST /contracts`
// or `mbs contracts register`. Usage: node contract.js PUBLISHED_DIR UNIT
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const Ajv2020 = require('ajv/dist/2020');

const [published, unit] = process.argv.slice(2);
const doc = yaml.load(fs.readFileSync(path.join(published, 'asyncapi', `${unit}.yaml`), 'utf8'));
const read = (...parts) => JSON.parse(fs.readFileSync(path.join(published, ...parts), 'utf8'));

const contracts = [];
for (const op of Object.values(doc.operations)) {
  if (op.action !== 'receive') continue;
  const ident = `${op['x-capability']}.v${op['x-version'].split('.')[0]}`;
  const { measured, ...sla } = op['x-sla'];  // `measured` documents the SLA, it is no field
  contracts.push({
    unit,
    owner: op['x-owner'],
    kind: doc.info['x-kind'],
    capability: op['x-capability'],
    version: op['x-version'],
    description: op.summary,
    request: read('schemas', unit, `${ident}.request.json`),
    reply: read('schemas', unit, `${ident}.reply.json`),
    errors: op['x-errors'],
    side_effects: op['x-side-effects'],
    compensation: op['x-compensation'],
    supports_dry_run: op['x-supports-dry-run'],
    compatibility: op['x-compatibility'],
    sla,
    pricing: op['x-pricing'],
  });
}
const ajv = new Ajv2020({ strict: false });
const valid = ajv.validate(read('contract.schema.json'), contracts);
if (!valid) {
  console.error(`not a contract file: ${ajv.errorsText(ajv.errors)}`);
  process.exit(1);
}
process.stdout.write(JSON.stringify(contracts, null, 2) + '\n');
