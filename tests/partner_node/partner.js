// FastShip as a partner in Node.js, written only from contracts/published: PARTNERS.md, the
// AsyncAPI document of the unit and its JSON Schemas (all read at run time, nothing of the
// Python kit). Env: MBS_KAFKA_BOOTSTRAP, MBS_PUBLISHED (the directory), MBS_UNIT (fastship),
// MBS_STATE_FILE (the unit's memory), MBS_GROUP_SUFFIX, and on a secure broker
// MBS_KAFKA_USERNAME / MBS_KAFKA_PASSWORD (SASL/SCRAM-SHA-256).
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const yaml = require('js-yaml');
const Ajv2020 = require('ajv/dist/2020');
const { Kafka, logLevel } = require('kafkajs');

const published = process.env.MBS_PUBLISHED;
const unit = process.env.MBS_UNIT || 'fastship';
const stateFile = process.env.MBS_STATE_FILE;
const doc = yaml.load(fs.readFileSync(path.join(published, 'asyncapi', `${unit}.yaml`), 'utf8'));
const info = doc.info;
const maxBytes = info['x-max-request-bytes'];
const ajv = new Ajv2020({ strict: false, allErrors: false });

// PARTNERS.md, "Request headers": platform headers are mbs-* and the W3C tracing ones.
const TRACING = new Set(['traceparent', 'tracestate', 'baggage']);
const isPlatform = (name) => name.startsWith('mbs-') || TRACING.has(name);
const PASSTHROUGH = ['mbs-journey-id', 'mbs-journey', 'mbs-step', 'mbs-attempt', 'traceparent', 'mbs-shadow'];
const utf8 = new TextDecoder('utf-8', { fatal: true });
const REPLY_PARTITION = /^[0-9]{1,9}$/;

// One capability per receive operation of the AsyncAPI document.
const capabilities = {};
for (const op of Object.values(doc.operations)) {
  if (op.action !== 'receive') continue;
  const channel = doc.channels[op.channel.$ref.split('/').pop()];
  const ident = `${op['x-capability']}.v${op['x-version'].split('.')[0]}`;
  const schema = (part) => JSON.parse(fs.readFileSync(
    path.join(published, 'schemas', unit, `${ident}.${part}.json`), 'utf8'));
  capabilities[channel.address] = {
    name: op['x-capability'],
    pricing: op['x-pricing'],
    dryRun: op['x-supports-dry-run'],
    errors: new Set(op['x-errors'].map((e) => e.code)),
    replyTopic: doc.channels[op.reply.channel.$ref.split('/').pop()].address,
    dlqTopic: `${channel.address}.dlq`,
    request: ajv.compile(schema('request')),
    reply: ajv.compile(schema('reply')),
  };
}

// The unit's memory: final answers by message id, and its business records. One appended
// line per answer holds the answer and the records it changed (all or nothing).
const answers = new Map();
const bookings = new Map();
const cancellations = new Map();
let nextTracking = 20250001;
if (stateFile && fs.existsSync(stateFile)) {
  for (const line of fs.readFileSync(stateFile, 'utf8').split('\n').filter(Boolean)) {
    apply(JSON.parse(line));
  }
}
function apply(entry) {
  answers.set(entry.id, entry.answer);
  for (const b of entry.bookings || []) bookings.set(b.shipment_id, b);
  for (const c of entry.cancellations || []) cancellations.set(c.shipment_id, c);
  if (entry.nextTracking) nextTracking = entry.nextTracking;
}

class BusinessError extends Error {
  constructor(code, detail) { super(detail); this.code = code; }
}

// FastShip's business: next-day parcels in DE, AT and CH; cancelling twice is harmless.
const handlers = {
  'shipping.book': (req, dry, changes) => {
    const country = req.country || 'DE';
    if (!['DE', 'AT', 'CH'].includes(country)) {
      throw new BusinessError('address_unserviceable', `FastShip delivers only in AT, CH, DE, not ${country}`);
    }
    const id = `fs-${crypto.randomBytes(6).toString('hex')}`;
    const booking = {
      shipment_id: dry ? `dry-${id}` : id,
      order_id: req.order_id,
      carrier: 'FastShip',
      tracking_number: `FS-${String(nextTracking).padStart(8, '0')}`,
      eta_days: 1,
    };
    if (!dry) {
      changes.bookings = [booking];
      changes.nextTracking = nextTracking + 1;
    }
    return booking;
  },
  'shipping.cancel': (req, dry, changes) => {
    const earlier = cancellations.get(req.shipment_id);
    if (earlier) return earlier;
    if (!bookings.has(req.shipment_id)) {
      throw new BusinessError('unknown_shipment', `FastShip has no shipment ${req.shipment_id}`);
    }
    const cancellation = { shipment_id: req.shipment_id, cancelled: true };
    if (!dry) changes.cancellations = [cancellation];
    return cancellation;
  },
};

function readHeaders(raw) {
  const text = {};
  const shown = {};
  const problems = [];
  for (const [name, value] of Object.entries(raw || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      shown[name] = v == null ? '' : v.toString('utf8');
      if (v == null) { if (isPlatform(name)) problems.push(`${name} has no value`); continue; }
      let decoded;
      try { decoded = utf8.decode(v); } catch (e) {
        if (isPlatform(name)) problems.push(`${name} is not UTF-8 text`);
        continue;
      }
      if (isPlatform(name) && name in text && text[name] !== decoded) {
        problems.push(`${name} is given more than once, with different values`);
      }
      text[name] = decoded;
    }
  }
  if ('mbs-deadline' in text && !/^[0-9]{1,15}$/.test(text['mbs-deadline'])) {
    problems.push('mbs-deadline is not epoch milliseconds');
  }
  if ('mbs-shadow' in text && !['0', '1'].includes(text['mbs-shadow'])) {
    problems.push('mbs-shadow is neither 0 nor 1');
  }
  if ('mbs-reply-partition' in text && !REPLY_PARTITION.test(text['mbs-reply-partition'])) {
    problems.push('mbs-reply-partition is not a partition number');
  }
  return { text, shown, problems };
}

function judge(cap, value, hdrs) {
  if (value.length > maxBytes) return ['too_large', `${value.length} bytes > ${maxBytes}`];
  if (hdrs.problems.length) return ['bad_header', hdrs.problems.join('; ')];
  if (!hdrs.text['mbs-message-id'] || !hdrs.text['mbs-correlation-id']) {
    return ['missing_header', 'mbs-message-id and mbs-correlation-id are required'];
  }
  let body;
  try { body = JSON.parse(utf8.decode(value)); } catch (e) { return ['not_json', String(e.message)]; }
  if (!cap.request(body)) return ['schema_invalid', ajv.errorsText(cap.request.errors)];
  return [null, body];
}

async function main() {
  const sasl = process.env.MBS_KAFKA_USERNAME
    ? { mechanism: 'scram-sha-256', username: process.env.MBS_KAFKA_USERNAME, password: process.env.MBS_KAFKA_PASSWORD }
    : undefined;
  const kafka = new Kafka({
    clientId: unit,
    brokers: process.env.MBS_KAFKA_BOOTSTRAP.split(','),
    sasl,
    logLevel: logLevel.WARN,
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  const admin = kafka.admin();
  const groupId = `${info['x-consumer-group-prefix']}${process.env.MBS_GROUP_SUFFIX || 'node'}`;
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await producer.connect();
  await admin.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: Object.keys(capabilities), fromBeginning: false });

  // PARTNERS.md, "Where a reply goes": the partition the caller reads, if the topic has it.
  const known = new Map();
  async function partitionsOf(topic, fresh) {
    if (fresh || !known.has(topic)) {
      const meta = await admin.fetchTopicMetadata({ topics: [topic] });
      known.set(topic, new Set(meta.topics[0].partitions.map((p) => p.partitionId)));
    }
    return known.get(topic);
  }
  async function replyPartition(topic, hdrs) {
    const named = hdrs['mbs-reply-partition'];
    if (named === undefined || !REPLY_PARTITION.test(named)) return undefined;
    const wanted = Number(named);
    if ((await partitionsOf(topic, false)).has(wanted)) return wanted;
    if ((await partitionsOf(topic, true)).has(wanted)) return wanted;
    console.warn(`${topic} has no partition ${wanted}: replying by key`);
    return undefined;
  }
  async function send(cap, hdrs, body, out) {
    for (const name of PASSTHROUGH) if (name in hdrs) out[name] = hdrs[name];
    const key = hdrs['mbs-journey-id'] || null;
    const partition = await replyPartition(cap.replyTopic, hdrs);
    await producer.send({ topic: cap.replyTopic, messages: [{ key, value: body, headers: out, partition }] });
  }
  function headersFor(cap, hdrs, ok, ms, error) {
    const out = {
      'mbs-message-id': crypto.randomUUID(),
      'mbs-correlation-id': hdrs['mbs-correlation-id'] || '',
      'mbs-unit': unit,
      'mbs-cost': cap.pricing.cost_per_call,
      'mbs-price': ok && hdrs['mbs-shadow'] !== '1' ? cap.pricing.price_per_call : '0',
      'mbs-handler-ms': ms.toFixed(3),
    };
    if (error) { out['mbs-error'] = error[0]; out['mbs-error-detail'] = String(error[1]).slice(0, 500); }
    return out;
  }
  const expired = (hdrs) => 'mbs-deadline' in hdrs && Number(hdrs['mbs-deadline']) < Date.now();

  function work(cap, hdrs, request, dry) {
    const started = process.hrtime.bigint();
    const changes = {};
    let body = '{}';
    let error = null;
    try {
      body = JSON.stringify(handlers[cap.name](request, dry, changes));
    } catch (e) {
      if (!(e instanceof BusinessError)) throw e;
      error = [e.code, e.message];
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    return { body, headers: headersFor(cap, hdrs, !error, ms, error), changes };
  }

  consumer.on(consumer.events.GROUP_JOIN, () => console.log(`serving ${Object.keys(capabilities).join(' ')} as ${groupId}`));
  // offsets of a new group are taken when it first fetches: from then on no request is missed
  let fetching = false;
  consumer.on(consumer.events.FETCH_START, () => {
    if (!fetching) console.log('fetching');
    fetching = true;
  });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const cap = capabilities[topic];
      const value = message.value || Buffer.alloc(0);
      const hdrs = readHeaders(message.headers);
      const text = hdrs.text;
      const [reason, request] = judge(cap, value, hdrs);
      if (reason) {
        const dead = { ...hdrs.shown, 'mbs-error': reason, 'mbs-error-detail': String(request).slice(0, 1000),
          'mbs-unit': unit, 'mbs-source-topic': topic, 'mbs-source-partition': String(partition),
          'mbs-source-offset': String(message.offset) };
        await producer.send({ topic: cap.dlqTopic, messages: [{ key: message.key, value, headers: dead }] });
        if (text['mbs-correlation-id']) {
          await send(cap, text, '{}', headersFor(cap, text, false, 0, ['invalid_request', `${reason}: ${request}`]));
        }
        return;
      }
      if (text['mbs-shadow'] === '1') {  // a dry run: nothing changes, nothing is remembered
        let error = null;
        if (expired(text)) error = ['deadline_exceeded', 'deadline passed before the request was started'];
        else if (!cap.dryRun) error = ['dry_run_unsupported', `${cap.name} declares no dry run`];
        if (error) { await send(cap, text, '{}', headersFor(cap, text, false, 0, error)); return; }
        const done = work(cap, text, request, true);
        await send(cap, text, done.body, done.headers);
        return;
      }
      const id = text['mbs-message-id'];
      let answer = answers.get(id);
      if (!answer) {
        let entry;
        if (expired(text)) {  // never started after the deadline: that is the final answer
          const error = ['deadline_exceeded', `deadline ${text['mbs-deadline']} passed before the request was started`];
          entry = { id, answer: { body: '{}', headers: headersFor(cap, text, false, 0, error) } };
        } else {
          const done = work(cap, text, request, false);
          entry = { id, answer: { body: done.body, headers: done.headers }, ...done.changes };
        }
        entry.answer.headers['mbs-request-id'] = id;  // says: this answer is final
        if (stateFile) fs.appendFileSync(stateFile, JSON.stringify(entry) + '\n');
        apply(entry);
        answer = entry.answer;
      }
      await send(cap, text, answer.body, { ...answer.headers, 'mbs-correlation-id': text['mbs-correlation-id'] });
    },
  });
  const stop = async () => {
    await consumer.disconnect(); await producer.disconnect(); await admin.disconnect(); process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
