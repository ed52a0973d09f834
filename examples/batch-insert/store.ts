/**
 * The order table on a real PostgreSQL (POSTGRES_URL, default the local trust account and a
 * database of the example's own): created when missing, written with one multi-row INSERT per call.
 */
import pg from 'pg';

/** An order as the example writes it. */
export interface Order {
  id: string;
  tenant: string;
  amountCents: number;
  currency: string;
  placedAt: string;
}

export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/sluice_examples';

export interface OrderStoreOptions {
  /** Default POSTGRES_URL, else DEFAULT_POSTGRES_URL. Its database is created when missing. */
  url?: string;
  /** Default 'orders'. A plain lower-case SQL name: it is put into statements, not passed as a parameter. */
  table?: string;
  /**
   * Connections, default 4: as many as the consumer's pool runs batches at once, so that no batch
   * waits for a connection while it holds a pool slot.
   */
  connections?: number;
  /**
   * The server cancels a statement after this long, default 5 s. `pg` cannot cancel a query from
   * an AbortSignal, so this (below the consumer's handlerTimeoutMs) is what ends a stuck INSERT.
   */
  statementTimeoutMs?: number;
}

export class OrderStore {
  /** INSERT statements sent: one per batch call that had valid rows. */
  statements = 0;
  /** Rows the INSERTs wrote (a redelivered row already there counts 0). */
  rowsWritten = 0;

  private constructor(
    readonly pool: pg.Pool,
    readonly table: string,
  ) {}

  static async open(options: OrderStoreOptions = {}): Promise<OrderStore> {
    const url = options.url ?? process.env.POSTGRES_URL ?? DEFAULT_POSTGRES_URL;
    const table = options.table ?? 'orders';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) throw new TypeError(`OrderStore: table ${JSON.stringify(table)} must be a lower-case SQL name`);
    await createDatabase(url);
    const pool = new pg.Pool({
      connectionString: url,
      max: options.connections ?? 4,
      statement_timeout: options.statementTimeoutMs ?? 5_000,
    });
    // An idle connection the server drops must not crash the process; the next query reconnects.
    pool.on('error', () => {});
    const store = new OrderStore(pool, table);
    await ignoreRace(() =>
      pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
        id text PRIMARY KEY,
        tenant text NOT NULL,
        amount_cents integer NOT NULL CHECK (amount_cents > 0),
        currency char(3) NOT NULL,
        placed_at timestamptz NOT NULL,
        inserted_at timestamptz NOT NULL DEFAULT now()
      )`),
    );
    return store;
  }

  /**
   * Writes `orders` in ONE statement. ON CONFLICT (id) DO NOTHING makes it idempotent: a batch
   * that is redelivered (a crash after the INSERT, before the acks) writes nothing twice.
   * Resolves with the rows written; rejects with the database's error, for the whole batch.
   */
  async insert(orders: readonly Order[]): Promise<number> {
    if (orders.length === 0) return 0;
    const values: unknown[] = [];
    const rows = orders.map((o) => {
      const at = values.length;
      values.push(o.id, o.tenant, o.amountCents, o.currency, o.placedAt);
      return `($${at + 1}, $${at + 2}, $${at + 3}, $${at + 4}, $${at + 5})`;
    });
    this.statements++;
    const result = await this.pool.query(
      `INSERT INTO ${this.table} (id, tenant, amount_cents, currency, placed_at) VALUES ${rows.join(', ')} ON CONFLICT (id) DO NOTHING`,
      values,
    );
    this.rowsWritten += result.rowCount ?? 0;
    return result.rowCount ?? 0;
  }

  /** How many times each of `ids` is in the table (0 for the missing ones). */
  async countIds(ids: readonly string[]): Promise<Map<string, number>> {
    const counts = new Map(ids.map((id) => [id, 0]));
    const { rows } = await this.pool.query<{ id: string; n: string }>(`SELECT id, count(*) AS n FROM ${this.table} WHERE id = ANY($1) GROUP BY id`, [ids]);
    for (const row of rows) counts.set(row.id, Number(row.n));
    return counts;
  }

  /** Rows whose id starts with `prefix` (one run's orders). */
  async countPrefix(prefix: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.table} WHERE starts_with(id, $1)`, [prefix]);
    return Number(rows[0]?.n ?? 0);
  }

  async dropTable(): Promise<void> {
    await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** CREATE DATABASE has no IF NOT EXISTS: ask pg_database first, through the server's own `postgres` database. */
async function createDatabase(url: string): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (name === '' || name === 'postgres') return;
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect().catch((error: unknown) => {
    throw new Error(`PostgreSQL at ${admin.host}: cannot connect (${error instanceof Error ? error.message || String(error) : error})`, { cause: error });
  });
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount === 0) await ignoreRace(() => client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`));
  } finally {
    await client.end();
  }
}

/** Two processes creating the same database or table at once: the loser's error means it exists now. */
async function ignoreRace(create: () => Promise<unknown>): Promise<void> {
  try {
    await create();
  } catch (error) {
    const code = (error as { code?: string }).code;
    // 42P04 duplicate_database, 42P07 duplicate_table, 23505 unique_violation (a catalog row inserted concurrently).
    if (code !== '42P04' && code !== '42P07' && code !== '23505') throw error;
  }
}
