// pooler-lab's Node.js runner: node-postgres (pg) and postgres.js configurations behind the client contract.
//
// It reads cells as JSON lines on stdin and answers each with iteration lines and a done line on stdout
// (docs/client-contract.md; the types and matching rules are lab/clients/contract.py's). Nothing but contract
// lines goes to stdout: console output of any kind (a driver's notices, say) is sent to stderr.
//
// A cell: per repeat a new pool of pool_size connections (or, with connections = "per-worker", a pool of one per
// worker), opened eagerly (so a failure to connect is the "connect" phase), the workers run concurrently over it,
// each its operations one after another (in the order `after`, `during` and `hold` set between workers), every answer held
// to what the statement must return; the first failure ends the cell unless keep_going. The cell's own limit is enforced
// here: past cell_timeout_s the cell is a "hang" naming what each worker still waited for, the pool is torn
// down without waiting for it, and the next cell is read.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect as tcpConnect } from 'node:net'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const CONTRACT = 2
const HERE = dirname(fileURLToPath(import.meta.url))

// -- stdout is the contract's alone ------------------------------------------------------------------------------

const stdoutWrite = process.stdout.write.bind(process.stdout)
for (const name of ['log', 'info', 'debug', 'warn', 'trace', 'dir', 'table']) console[name] = console.error
function send(message) {
  stdoutWrite(JSON.stringify(message) + '\n')
}
function log(...args) {
  process.stderr.write('[node runner] ' + args.join(' ') + '\n')
}
process.on('unhandledRejection', (err) => log('unhandled rejection:', describeError(err)))
process.on('uncaughtException', (err) => log('uncaught exception:', describeError(err)))

function describeError(err) {
  return err && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : String(err)
}

// -- the configurations -------------------------------------------------------------------------------------------

// name -> how its pool is built and its statements are sent (runner.toml describes each for the report)
const CONFIGURATIONS = {
  'node-pg-default': { driver: 'pg', named: false },
  'node-pg-named': { driver: 'pg', named: true },
  'node-postgres-js-default': { driver: 'postgres', prepare: true },
  'node-postgres-js-no-prepare': { driver: 'postgres', prepare: false },
}
const PACKAGES = { pg: ['pg'], postgres: ['postgres'] }

const modules = {}
async function load(driver) {
  if (!modules[driver]) {
    const mod = await import(driver)
    modules[driver] = mod.default ?? mod
    if (driver === 'postgres') modules.PostgresError = mod.PostgresError
  }
  return modules[driver]
}

/** The installed version of a package, from its own package.json (postgres.js does not export that file). */
function installedVersion(pkg) {
  try {
    return JSON.parse(readFileSync(join(HERE, 'node_modules', pkg, 'package.json'), 'utf8')).version
  } catch {
    return 'not installed'
  }
}

// -- statements ---------------------------------------------------------------------------------------------------

// `:name`, not a `::cast`, as lab/clients/python/base.py's _PARAM
const PARAM = /(?<![:\w]):([A-Za-z_]\w*)/g

/** `:name` -> `$1..$n` in order of first appearance; a name used twice is one parameter. */
function toDollar(sql) {
  const names = []
  const text = sql.replace(PARAM, (_, name) => {
    let i = names.indexOf(name)
    if (i < 0) i = names.push(name) - 1
    return '$' + (i + 1)
  })
  return { text, names }
}

/** The statement as a tagged template's strings (postgres.js's own API, sql`...${value}...`), and the parameter
 * name of each hole: what an application writing the query inline sends. One strings array per SQL text, as one
 * call site has. */
const templates = new Map()
function toTemplate(sql) {
  let t = templates.get(sql)
  if (!t) {
    const strings = []
    const names = []
    let last = 0
    for (const m of sql.matchAll(PARAM)) {
      strings.push(sql.slice(last, m.index))
      names.push(m[1])
      last = m.index + m[0].length
    }
    strings.push(sql.slice(last))
    Object.defineProperty(strings, 'raw', { value: Object.freeze([...strings]) })
    t = { strings: Object.freeze(strings), names }
    templates.set(sql, t)
  }
  return t
}

function valuesOf(names, params) {
  return names.map((name) => {
    if (!Object.prototype.hasOwnProperty.call(params, name)) throw new Error(`the statement's parameter :${name} has no value`)
    return params[name]
  })
}

function isRef(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && 'ref' in v
}

/** contract.resolve: {"ref": [step, row, column]} -> what that earlier statement returned there. */
function resolve(value, results) {
  if (!isRef(value)) return value
  const [step, row, column] = value.ref
  const rows = results[step]
  if (!rows || !rows[row] || column >= rows[row].length) {
    throw new Error(`reference ${JSON.stringify(value.ref)} points past what the earlier statements returned`)
  }
  return rows[row][column]
}

function paramsOf(statement, results) {
  const out = {}
  for (const [name, v] of Object.entries(statement.params || {})) out[name] = resolve(v, results)
  return out
}

// -- checking answers (contract.rows_match) -----------------------------------------------------------------------

/** contract.plain: a value as JSON has it. */
function plain(v) {
  if (Array.isArray(v)) return v.map(plain)
  if (v instanceof Date) return v.toISOString()
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex')
  return v
}

const DIGITS = /^-*[0-9]+$/ // str.lstrip("-").isdigit()

function pyEqual(a, b) {
  // Python's ==, for JSON values: True == 1, 1 == 1.0
  if (typeof a === 'boolean' && typeof b === 'number') return Number(a) === b
  if (typeof a === 'number' && typeof b === 'boolean') return a === Number(b)
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    try {
      return (typeof a === 'bigint' || typeof a === 'number') && (typeof b === 'bigint' || typeof b === 'number') && BigInt(a) === BigInt(b)
    } catch {
      return false
    }
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEqual(x, b[i]))
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a)
    return ka.length === Object.keys(b).length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && pyEqual(a[k], b[k]))
  }
  return a === b
}

function matches(want, got, results) {
  if (want !== null && typeof want === 'object' && !Array.isArray(want) && want.type === 'integer') {
    return (typeof got === 'number' && Number.isInteger(got)) || typeof got === 'bigint' || (typeof got === 'string' && DIGITS.test(got))
  }
  if (isRef(want)) {
    const ref = resolve(want, results)
    return pyEqual(plain(ref), plain(got)) || String(ref) === String(got)
  }
  if (typeof want === 'number' && Number.isInteger(want) && typeof got === 'string' && DIGITS.test(got)) {
    try {
      return BigInt(got.replace(/^-+/, (s) => (s.length % 2 ? '-' : ''))) === BigInt(want)
    } catch {
      return false
    }
  }
  return pyEqual(plain(got), want)
}

function rowsMatch(expect, rows, results) {
  if (!Array.isArray(rows) || rows.length !== expect.length) return false
  return expect.every((want, i) => Array.isArray(rows[i]) && rows[i].length === want.length && want.every((w, j) => matches(w, rows[i][j], results)))
}

/** What was expected, with references resolved, as a row records it (execute._shown_expect). */
function shownExpect(expect, results) {
  return expect.map((row) =>
    row.map((v) => {
      if (isRef(v)) {
        try {
          return plain(resolve(v, results))
        } catch {
          return v
        }
      }
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && v.type) return `<${v.type}>`
      return v
    }),
  )
}

/** json.dumps as Python writes it (", " and ": ", ASCII only): a row's expected and received text. */
function pyJson(v) {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
  if (Array.isArray(v)) return '[' + v.map(pyJson).join(', ') + ']'
  if (typeof v === 'object') return '{' + Object.entries(v).map(([k, x]) => pyJson(String(k)) + ': ' + pyJson(x)).join(', ') + '}'
  return pyJson(String(v))
}

// -- errors as outcomes (lab.results.outcome.classify) ------------------------------------------------------------

class PhaseError extends Error {
  constructor(phase, cause) {
    super(`${phase}: ${cause && cause.message}`)
    this.phase = phase
    this.cause = cause
  }
}

class WrongResult extends Error {
  constructor(what, got, want) {
    super(`${what}: got ${pyJson(got)}, expected ${pyJson(want)}`)
    this.what = what
    this.got = got
    this.want = want
  }
}

class NotImplementedError extends Error {}

const BUILTIN_ERRORS = new Set(['Error', 'TypeError', 'RangeError', 'SyntaxError', 'ReferenceError', 'AggregateError', 'EvalError', 'URIError'])

/** The driver's error class as its users see it: pg.DatabaseError, postgres.PostgresError; a plain Error as is. */
function className(err, driver) {
  if (!err || typeof err !== 'object') return typeof err
  if (modules.pg && modules.pg.DatabaseError && err instanceof modules.pg.DatabaseError) return 'pg.DatabaseError'
  if (modules.PostgresError && err instanceof modules.PostgresError) return 'postgres.PostgresError'
  const name = (err.constructor && err.constructor.name) || 'Error'
  if (BUILTIN_ERRORS.has(name) || name === 'NotImplementedError') return name
  return driver ? `${driver}.${name}` : name
}

/** err.code when it is a SQLSTATE (five digits or capitals; not a system error's EPIPE, not postgres.js's own
 * CONNECT_TIMEOUT). */
function sqlstateOf(err) {
  const code = err && err.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('E') && !err.syscall ? code : null
}

function firstLine(text) {
  const t = String(text ?? '').trim()
  return t ? t.split('\n')[0].trim() : ''
}

function messageOf(err) {
  if (!err || typeof err !== 'object') return String(err)
  if (!err.message && Array.isArray(err.errors) && err.errors.length) return messageOf(err.errors[0])
  return err.message || ''
}

/** err, then what it wraps: its cause, an AggregateError's first error. */
function chain(err) {
  const out = []
  let current = err
  while (current && typeof current === 'object' && !out.includes(current)) {
    out.push(current)
    current = current.cause || (Array.isArray(current.errors) && current.errors[0]) || null
  }
  return out
}

const DRIVER_TIMEOUT_CODES = new Set(['CONNECT_TIMEOUT', 'QUEUE_TIMEOUT', 'QUERY_TIMEOUT'])
const DRIVER_TIMEOUT_MESSAGES = [/^timeout exceeded when trying to connect/, /^Connection terminated due to connection timeout/, /^Query read timeout/]

/** A time limit of the driver's or its pool's own ended the wait (its own error, not the server's). */
function isDriverTimeout(err) {
  if (!err || typeof err !== 'object' || sqlstateOf(err)) return false
  return DRIVER_TIMEOUT_CODES.has(err.code) || DRIVER_TIMEOUT_MESSAGES.some((re) => re.test(messageOf(err)))
}

function classify(err, iteration, driver) {
  let phase = null
  while (err instanceof PhaseError) {
    phase = err.phase
    err = err.cause
  }
  if (err instanceof WrongResult) {
    return {
      kind: 'wrong-result',
      phase,
      iteration,
      detail: firstLine(err.message),
      expected: pyJson(err.want),
      received: pyJson(err.got),
    }
  }
  const links = chain(err)
  const withState = links.find((e) => sqlstateOf(e)) || null
  const inner = links[links.length - 1]
  const detail = links.length > 1 ? `${className(inner, driver)}: ${firstLine(messageOf(inner))}` : null
  const errorClass = className(err, driver)
  const message = firstLine(messageOf(withState || err)) || errorClass
  if (isDriverTimeout(err)) {
    return { kind: 'timeout', error_class: errorClass, sqlstate: withState ? sqlstateOf(withState) : null, message, phase, iteration, detail: detail || firstLine(messageOf(err)) || null }
  }
  return { kind: 'error', error_class: errorClass, sqlstate: withState ? sqlstateOf(withState) : null, message, phase, iteration, detail }
}

// -- time ---------------------------------------------------------------------------------------------------------

const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000))
const now = () => performance.now() / 1000

/** p, or `fallback` once `seconds` have passed (p is left to settle on its own). */
function within(p, seconds, fallback) {
  let timer
  return Promise.race([
    Promise.resolve(p).finally(() => clearTimeout(timer)),
    new Promise((r) => {
      timer = setTimeout(() => r(fallback), seconds * 1000)
    }),
  ])
}

/** A CancelRequest for (pid, key) at host:port, sent as libpq sends one: the packet, then wait for the server (or
 * pooler) to close the connection. A forced teardown sends it before it drops the connections, so that a statement
 * that never answered does not go on holding its backend (and its locks) after the cell; a pooler forwards a cancel
 * only while its client is still connected.
 *
 * Not the drivers' own cancel: postgres.js's query.cancel() half-closes the socket right after the packet, and
 * PgBouncer 1.18 then frees the cancel client while its cancel is still being forwarded and exits with
 * "FATAL in function disconnect_client(): bad client state: 0" (pgbouncer/pgbouncer#801; fix proposed in #846); seen here.
 * pg's client.cancel() reads a deprecated property. */
function sendCancel(host, port, pid, key) {
  if (!host || !port || !Number.isInteger(pid) || !Number.isInteger(key)) return Promise.resolve()
  return new Promise((done) => {
    const packet = Buffer.alloc(16)
    packet.writeInt32BE(16, 0)
    packet.writeInt32BE(80877102, 4)
    packet.writeInt32BE(pid, 8)
    packet.writeInt32BE(key, 12)
    const socket = String(host).startsWith('/') ? tcpConnect(`${host}/.s.PGSQL.${port}`) : tcpConnect(Number(port), host)
    const timer = setTimeout(() => socket.destroy(), 3000)
    socket.on('error', (err) => log('cancel request:', messageOf(err)))
    socket.on('close', () => {
      clearTimeout(timer)
      done()
    })
    socket.on('data', () => {}) // nothing is expected; the server just closes
    socket.on('connect', () => socket.write(packet)) // no half-close: the server closes once it has acted on it
  })
}

// -- the drivers --------------------------------------------------------------------------------------------------

/** node-postgres: pg.Pool; a plain query is pool.query(), a transaction one client from pool.connect(). */
class PgPool {
  constructor(cell, config) {
    this.cell = cell
    this.named = config.named
    this.clients = new Set()
    this.closing = null
  }

  /** A named query's name, derived from its text (as an application reusing a query object has one per text). */
  static nameOf(text) {
    return 'lab_' + createHash('sha1').update(text).digest('hex').slice(0, 12)
  }

  query(sql, params) {
    const { text, names } = toDollar(sql)
    const config = { text, values: valuesOf(names, params), rowMode: 'array' }
    if (this.named) config.name = PgPool.nameOf(text)
    return config
  }

  async open() {
    const pg = await load('pg')
    const timeoutMs = Math.max(1, Math.round(this.cell.op_timeout_s * 1000))
    this.pool = new pg.Pool({ connectionString: this.cell.dsn, max: this.cell.pool_size, connectionTimeoutMillis: timeoutMs })
    this.pool.on('error', (err) => log('pg pool: idle client error:', messageOf(err)))
    this.pool.on('connect', (client) => {
      this.clients.add(client)
      client.on('error', (err) => log('pg client error:', messageOf(err)))
    })
    this.pool.on('remove', (client) => this.clients.delete(client))
    // open every connection of the pool now, so that work spreads over all of them and a failure to connect is
    // the connect phase's
    const got = await Promise.allSettled(Array.from({ length: this.cell.pool_size }, () => this.pool.connect()))
    for (const r of got) if (r.status === 'fulfilled') r.value.release()
    const failed = got.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason
  }

  async fetch(statement, params) {
    return (await this.pool.query(this.query(statement.sql, params))).rows
  }

  async transaction(statements, beforeCommit) {
    const results = []
    const client = await this.pool.connect()
    let broken = null
    try {
      try {
        await client.query('BEGIN')
        for (const statement of statements) {
          results.push((await client.query(this.query(statement.sql, paramsOf(statement, results)))).rows)
        }
        if (beforeCommit) await beforeCommit()
      } catch (err) {
        try {
          await client.query('ROLLBACK')
        } catch (rollbackErr) {
          broken = rollbackErr
        }
        throw err
      }
      try {
        await client.query('COMMIT')
      } catch (err) {
        broken = err
        throw new PhaseError('commit', err)
      }
    } finally {
      client.release(broken || undefined)
    }
    return results
  }

  /** End the pool; `force`: destroy its sockets first (a query may never answer). */
  async close(force) {
    if (!this.pool) return
    if (force) {
      const cancels = [...this.clients].map((c) => sendCancel(c.host, c.port, c.processID, c.secretKey))
      await within(Promise.all(cancels), 1, null)
      for (const client of this.clients) {
        try {
          client.connection.stream.destroy()
        } catch (err) {
          log('pg: destroying a socket failed:', messageOf(err))
        }
      }
    }
    this.closing = this.closing || this.pool.end().catch((err) => log('pg pool.end():', messageOf(err)))
    const ended = await within(this.closing.then(() => true), force ? 1 : 5, false)
    if (!ended && !force) return this.close(true)
    if (!ended) log('pg: the pool did not end within 1s; left behind')
  }
}

/** postgres.js: postgres(dsn, {max}); statements as tagged templates (its own API), a transaction sql.begin(). */
class PostgresJsPool {
  constructor(cell, config) {
    this.cell = cell
    this.prepare = config.prepare
    this.closing = null
    this.inflight = new Set()
  }

  async statement(sql, statement, params) {
    const { strings, names } = toTemplate(statement.sql)
    const query = sql(strings, ...valuesOf(names, params))
    this.inflight.add(query)
    try {
      return await query.values()
    } finally {
      this.inflight.delete(query)
    }
  }

  async open() {
    const postgres = await load('postgres')
    const options = {
      max: this.cell.pool_size,
      // seconds (postgres.js multiplies by 1000, so a fraction works; 0 would mean no limit). Its queue_timeout is
      // left at its default (none): with it, a connect that never answers surfaces as QUEUE_TIMEOUT, not CONNECT_TIMEOUT
      connect_timeout: Math.max(0.001, this.cell.op_timeout_s),
    }
    if (!this.prepare) options.prepare = false
    this.sql = postgres(this.cell.dsn, options)
    // connections open lazily: reserve every one now, so work spreads over all and a failure is the connect phase's
    const got = await Promise.allSettled(Array.from({ length: this.cell.pool_size }, () => this.sql.reserve()))
    for (const r of got) if (r.status === 'fulfilled') r.value.release()
    const failed = got.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason
  }

  async fetch(statement, params) {
    return await this.statement(this.sql, statement, params)
  }

  async transaction(statements, beforeCommit) {
    const results = []
    let bodyDone = false
    try {
      await this.sql.begin(async (tx) => {
        for (const statement of statements) results.push(await this.statement(tx, statement, paramsOf(statement, results)))
        if (beforeCommit) await beforeCommit()
        bodyDone = true
      })
    } catch (err) {
      throw bodyDone ? new PhaseError('commit', err) : err // sql.begin sends COMMIT once the body has returned
    }
    return results
  }

  /** postgres.js pipelines the queries a transaction's callback returns as an array (its README, "Transactions"). */
  async batch(statements) {
    const { strings, names } = toTemplate(statements[0].sql)
    let bodyDone = false
    try {
      const results = await this.sql.begin((tx) => {
        const queries = statements.map((s) => tx(strings, ...valuesOf(names, paramsOf(s, []))).values())
        bodyDone = true
        return queries
      })
      return results
    } catch (err) {
      throw bodyDone && !sqlstateOf(err) ? new PhaseError('commit', err) : err
    }
  }

  async close(force) {
    if (!this.sql) return
    if (force && this.inflight.size) {
      // cancel what is still running (a pooler forwards a cancel only while its client is connected), then end
      const connections = new Set([...this.inflight].map((query) => query.connection).filter(Boolean))
      const cancels = [...connections].map((c) => sendCancel(c.host, c.port, c.backend && c.backend.pid, c.backend && c.backend.secret))
      await within(Promise.all(cancels), 1, null)
    }
    // forced: the cell already waited its limit, so the connections are destroyed at once
    this.closing = this.closing || this.sql.end({ timeout: force ? 0 : 5 }).catch((err) => log('postgres.js sql.end():', messageOf(err)))
    const ended = await within(this.closing.then(() => true), force ? 1 : 7, false)
    if (!ended) log('postgres.js: sql.end() did not finish in time; left behind')
  }
}

function makePool(cell, config) {
  return config.driver === 'pg' ? new PgPool(cell, config) : new PostgresJsPool(cell, config)
}

/** connections = "per-worker": a pool of one connection per worker, opened one after another, closed together. */
class PerWorker {
  constructor(cell, config) {
    this.pools = cell.workers.map(() => makePool({ ...cell, pool_size: 1 }, config))
  }

  of(w) {
    return this.pools[w]
  }

  async open() {
    for (const p of this.pools) await p.open()
  }

  async close(force) {
    await Promise.all(this.pools.map((p) => p.close(force)))
  }
}

/** The order `after`, `during` and `hold` set between the operations of different workers, for one iteration: each
 * operation marks when it has run its statements (a held transaction: before it waits) and when it is done. */
class Order {
  constructor() {
    this.events = new Map()
  }

  event(kind, w, i) {
    const key = `${kind}/${w}/${i}`
    let e = this.events.get(key)
    if (!e) {
      let resolve
      const promise = new Promise((r) => (resolve = r))
      e = { promise, resolve }
      this.events.set(key, e)
    }
    return e
  }

  async wait(kind, refs) {
    for (const [w, i] of refs || []) await this.event(kind, w, i).promise
  }

  ran(w, i) {
    this.event('ran', w, i).resolve()
  }

  done(w, i) {
    this.ran(w, i)
    this.event('done', w, i).resolve()
  }
}

// -- running a cell -----------------------------------------------------------------------------------------------

/** One operation (execute.perform): its pause, then a statement on the pool or several in one transaction; every
 * answer checked once it is done. */
async function perform(pool, op, order, w, i) {
  await order.wait('done', op.after)
  await order.wait('ran', op.during)
  if (op.pause_s) await sleep(op.pause_s)
  if (op.call !== null && op.call !== undefined) throw new NotImplementedError(`the node runner implements no named operation '${op.call}'`)
  let results
  try {
    if (op.batch) {
      if (!pool.batch) throw new NotImplementedError('node-postgres has no batch API')
      results = await pool.batch(op.statements)
    } else if (op.transaction) {
      const hold = op.hold && op.hold.length ? async () => {
        order.ran(w, i) // its statements have run: its server connection is pinned until the commit
        await order.wait('done', op.hold)
      } : null
      results = await pool.transaction(op.statements, hold)
    } else {
      const first = op.statements[0]
      results = [await pool.fetch(first, paramsOf(first, []))]
    }
  } finally {
    order.done(w, i)
  }
  op.statements.forEach((statement, i) => {
    const rows = results[i]
    if (statement.expect !== null && statement.expect !== undefined && !rowsMatch(statement.expect, rows, results)) {
      throw new WrongResult(statement.what || statement.sql, plain(rows), shownExpect(statement.expect, results))
    }
  })
}

/** One repeat: a new pool, opened; the workers concurrently; the pool closed. Resolves to the first failure (or
 * null); `run` is how the cell reads what is outstanding and stops it. */
async function iteration(cell, config, run) {
  run.stage = 'opening the pool'
  const pool = cell.connections === 'per-worker' ? new PerWorker(cell, config) : makePool(cell, config)
  const order = new Order()
  run.pool = pool
  try {
    try {
      await pool.open()
    } catch (err) {
      return new PhaseError('connect', err)
    }
    run.stage = 'running'
    let failure = null
    let failed
    const firstFailure = new Promise((r) => (failed = r))
    const worker = async (w, ops) => {
      const mine = pool instanceof PerWorker ? pool.of(w) : pool
      for (let i = 0; i < ops.length; i++) {
        if (run.stop) return
        run.outstanding.set(w, `worker ${w}'s operation ${i + 1} of ${ops.length}`)
        const t0 = now()
        try {
          await perform(mine, ops[i], order, w, i)
        } catch (err) {
          throw err instanceof PhaseError ? err : new PhaseError(i === 0 ? 'first query' : 'later query', err)
        }
        run.latencies.push(now() - t0)
      }
      run.outstanding.delete(w)
    }
    const tasks = cell.workers.map((ops, w) =>
      worker(w, ops).catch((err) => {
        if (!failure) {
          failure = err
          run.stop = true
          failed()
        }
      }),
    )
    const all = Promise.all(tasks)
    await Promise.race([all, firstFailure])
    if (failure) {
      // the first failure ends the cell: the others finish the operation they are in, or are cut off
      const settled = await within(all.then(() => true), 1, false)
      run.stage = 'closing the pool'
      await pool.close(!settled)
      return failure
    }
    return null
  } finally {
    run.stage = 'closing the pool'
    await pool.close(false)
  }
}

async function runCell(cell) {
  const started = now()
  const config = CONFIGURATIONS[cell.configuration]
  const versions = {}
  const done = () => send({ type: 'done', versions, elapsed_s: round(now() - started) })
  if (!config) {
    send({
      type: 'iteration',
      index: 0,
      outcome: { kind: 'error', error_class: 'ConfigError', message: `the node runner has no configuration '${cell.configuration}' (it has ${Object.keys(CONFIGURATIONS).join(', ')})`, iteration: 0 },
      latencies_s: [],
    })
    return done()
  }
  for (const pkg of PACKAGES[config.driver]) versions[pkg] = installedVersion(pkg)
  const limit = Number(cell.cell_timeout_s)
  const deadline = started + limit
  const HANG = Symbol('hang')
  for (let i = 0; i < cell.repeats; i++) {
    const run = { stage: 'opening the pool', outstanding: new Map(), latencies: [], stop: false, pool: null }
    const attempt = iteration(cell, config, run).catch((err) => err)
    const left = deadline - now()
    const result = left > 0 ? await within(attempt, left, HANG) : HANG
    if (result === HANG) {
      run.stop = true
      const waiting = [...run.outstanding.values()].join('; ') || run.stage
      send({
        type: 'iteration',
        index: i,
        outcome: { kind: 'hang', iteration: i, detail: `no answer within the cell limit of ${limit}s; outstanding: ${waiting}` },
        latencies_s: run.latencies.map(round),
      })
      done()
      // tear the pool down without waiting for what never answered, before the next cell (the harness's clock for
      // that cell runs from when it wrote it, so this stays short: at most 1s for the cancels, 1s for the end)
      if (run.pool) await within(run.pool.close(true).catch((err) => log('closing after a hang:', messageOf(err))), 2.5, null)
      return
    }
    const outcome = result ? classify(result, i, config.driver) : { kind: 'ok' }
    send({ type: 'iteration', index: i, outcome, latencies_s: run.latencies.map(round) })
    if (result && !cell.keep_going) break
  }
  done()
}

function round(x) {
  return Math.round(x * 1e6) / 1e6
}

// -- the loop -----------------------------------------------------------------------------------------------------

async function main() {
  send({ type: 'hello', contract: CONTRACT, runtime: `node ${process.version}` })
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  for await (const line of lines) {
    if (!line.trim()) continue
    let message
    try {
      message = JSON.parse(line)
    } catch (err) {
      log('not JSON, ignored:', line.slice(0, 200))
      continue
    }
    if (!message || message.type !== 'cell') {
      log('not a cell, ignored:', line.slice(0, 200))
      continue
    }
    if (message.contract !== undefined && message.contract !== CONTRACT) {
      send({ type: 'fatal', message: `the node runner speaks contract ${CONTRACT}, the cell is contract ${message.contract}` })
      continue
    }
    try {
      await runCell(message)
    } catch (err) {
      // a bug of the runner's own: say so rather than leave the harness waiting
      send({ type: 'fatal', message: `the node runner failed on a cell: ${describeError(err)}` })
    }
  }
  process.exit(0)
}

main().catch((err) => {
  send({ type: 'fatal', message: `the node runner failed: ${describeError(err)}` })
  process.exit(1)
})
