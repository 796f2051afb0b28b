#!/usr/bin/env node
// Stock Yjs client for the interop test of the crdtsync relay's y-websocket endpoint.
//
// tests/test_interop_yjs.py runs this script to check that an unmodified Yjs client (npm `yjs`
// + `y-websocket`'s WebsocketProvider) can sync through `ws://HOST:PORT/yjs/{doc_id}`.
// The script connects, waits for the initial sync, writes --write pairs into the Y.Map "root"
// (and "hello from node" into the Y.Text "notes" with --text), waits until every --expect
// pair shows up in "root", waits until its own changes have left the socket, then prints
// ONE line of JSON on stdout and exits:
//
//   exit 0  {"ok": true,  "root": {...}, "notes": "..."}
//   exit 1  {"ok": false, "error": "...", "root": {...}, "notes": "..."}   timeout / server refused
//   exit 2  {"ok": false, "error": "..."}                                 bad arguments or a crash
//
// Usage:
//   node yjs_client.mjs --url ws://127.0.0.1:PORT/yjs --doc DOCID [--token T]
//       [--write KEY=VALUE ...] [--expect KEY=VALUE ...] [--text] [--timeout-ms 20000]
//
// Values are written as strings. An --expect value matches a string entry equal to it, or any
// other entry whose JSON encoding equals it (so `--expect n=3` matches the number 3).
// Progress messages go to stderr.

import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const log = (message) => process.stderr.write(`[yjs_client] ${message}\n`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let doc = null
const snapshot = () =>
  doc === null ? {} : { root: doc.getMap('root').toJSON(), notes: doc.getText('notes').toString() }

let finished = false
function finish (code, result) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}
const crash = (error) => finish(2, { ok: false, error: `exception: ${error?.stack ?? error}`, ...snapshot() })
process.on('uncaughtException', crash)
process.on('unhandledRejection', crash)

function parsePairs (values, option) {
  return (values ?? []).map((item) => {
    const at = item.indexOf('=')
    if (at <= 0) throw new Error(`${option} expects KEY=VALUE, got ${JSON.stringify(item)}`)
    return [item.slice(0, at), item.slice(at + 1)]
  })
}

const matches = (value, expected) =>
  value !== undefined && (typeof value === 'string' ? value === expected : JSON.stringify(value) === expected)

async function main () {
  const { values: args } = parseArgs({
    options: {
      url: { type: 'string' },
      doc: { type: 'string' },
      token: { type: 'string' },
      write: { type: 'string', multiple: true },
      expect: { type: 'string', multiple: true },
      text: { type: 'boolean', default: false },
      'timeout-ms': { type: 'string', default: '20000' }
    }
  })
  if (!args.url || !args.doc) throw new Error('--url and --doc are required')
  const writes = parsePairs(args.write, '--write')
  const expects = parsePairs(args.expect, '--expect')
  const timeoutMs = Number(args['timeout-ms'])
  if (!(timeoutMs > 0)) throw new Error(`bad --timeout-ms ${args['timeout-ms']}`)

  doc = new Y.Doc()
  const root = doc.getMap('root')
  const notes = doc.getText('notes')
  const provider = new WebsocketProvider(args.url, args.doc, doc, {
    WebSocketPolyfill: WebSocket, // Node 20 has no global WebSocket
    params: args.token ? { token: args.token } : {},
    disableBc: true // one process per client: no cross-tab BroadcastChannel
  })

  // Everything below races against one deadline; `stage` names what we were waiting for.
  let stage = 'connecting'
  let lastError = ''
  let lastClose = ''
  provider.on('status', ({ status }) => log(`status ${status}`))
  provider.on('connection-error', (event) => { lastError = `error: ${event?.message || event?.type || event}` })
  provider.on('connection-close', (event) => {
    if (event) lastClose = `closed: code ${event.code} ${event.reason ?? ''}`.trim()
  })
  const refused = new Promise((resolve, reject) => {
    // y-websocket stops reconnecting after a 4400-4499 close (e.g. a rejected token)
    provider.on('closed', ({ code, reason }) => reject(new Error(`server closed the connection for good: code ${code} ${reason}`.trim())))
  })
  let timer
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${timeoutMs} ms while ${stage}` + (lastError || lastClose ? ` (last connection ${[lastError, lastClose].filter(Boolean).join(', ')})` : ''))), timeoutMs)
  })
  const race = (promise) => Promise.race([promise, refused, deadline])

  try {
    // 1. initial sync: the server answered our sync step 1 with its step 2
    stage = `waiting for the initial sync with ${provider.url}`
    await race(new Promise((resolve) => {
      if (provider.synced) resolve()
      provider.on('sync', (synced) => { if (synced) resolve() })
    }))
    log('synced')

    // 2. local edits, in one transaction
    doc.transact(() => {
      for (const [key, value] of writes) root.set(key, value)
      if (args.text) notes.insert(notes.length, 'hello from node')
    })

    // 3. wait for the other side's edits
    stage = `waiting for ${expects.map(([k, v]) => `${k}=${v}`).join(', ') || 'nothing'} in "root"`
    await race(new Promise((resolve) => {
      const check = () => {
        if (expects.every(([key, value]) => matches(root.get(key), value))) {
          root.unobserve(check)
          resolve()
        }
      }
      root.observe(check)
      check()
    }))
    log('expectations met')

    // 4. make sure our own edits have left the socket (after a reconnect: wait for the re-sync)
    stage = 'flushing local changes'
    await race((async () => {
      await sleep(300)
      while (!(provider.wsconnected && provider.synced && provider.ws?.bufferedAmount === 0)) await sleep(50)
    })())
  } catch (error) {
    clearTimeout(timer)
    provider.destroy()
    finish(1, { ok: false, error: error.message, ...snapshot() })
    return
  }
  clearTimeout(timer)

  const result = { ok: true, ...snapshot() }
  // close cleanly: give the close handshake up to a second before exiting
  const ws = provider.ws
  provider.destroy()
  for (let waited = 0; ws && ws.readyState !== ws.CLOSED && waited < 1000; waited += 20) await sleep(20)
  finish(0, result)
}

main().catch(crash)
