"""ledger_post(): the ledger service's write, done inside PostgreSQL in one round trip.

It does exactly what app/ledger/services.py does in Python on SQLite (the tests run the whole
suite on both): lock and check the limited accounts in account-id order, put back what it
changed if one refuses, spread hot accounts over free shards, then write the transaction and
its postings. A refusal is returned, not raised, so the caller's transaction stays usable.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEDGER_POST = """
CREATE OR REPLACE FUNCTION ledger_post(
    p_kind text, p_created_at timestamptz, p_channel text, p_store_id bigint,
    p_device_id bigint, p_actor text, p_meta jsonb, p_reverses_id bigint,
    p_account_ids bigint[], p_amounts bigint[], p_units text[], p_shard_offset int
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    leg record;
    acct record;
    new_balance bigint;
    done_ids bigint[] := '{}';
    done_deltas bigint[] := '{}';
    balances jsonb := '{}';
    tx_id bigint;
BEGIN
    -- Every leg names an existing account, in that account's unit.
    FOR leg IN
        SELECT l.id, l.unit, a.unit AS account_unit
        FROM unnest(p_account_ids, p_units) AS l(id, unit)
        LEFT JOIN ledger_accounts a ON a.id = l.id
    LOOP
        IF leg.account_unit IS NULL THEN
            RETURN jsonb_build_object('error', 'account_not_found',
                                      'details', jsonb_build_object('account_id', leg.id));
        ELSIF leg.account_unit <> leg.unit THEN
            RETURN jsonb_build_object('error', 'unit_mismatch', 'details',
                jsonb_build_object('account_id', leg.id, 'account_unit', leg.account_unit));
        END IF;
    END LOOP;

    -- Accounts that can refuse, in account-id order: the one locking order.
    FOR acct IN
        SELECT n.id, n.delta
        FROM (SELECT l.id, sum(l.amount)::bigint AS delta
              FROM unnest(p_account_ids, p_amounts) AS l(id, amount) GROUP BY l.id) n
        JOIN ledger_accounts a ON a.id = n.id
        WHERE n.delta <> 0 AND a.shard_count = 1
        ORDER BY n.id
    LOOP
        UPDATE ledger_accounts SET balance = balance + acct.delta
        WHERE id = acct.id AND NOT frozen
          AND (NOT no_negative OR balance + acct.delta >= 0)
          AND (max_balance IS NULL OR balance + acct.delta <= max_balance)
        RETURNING balance INTO new_balance;
        IF NOT FOUND THEN
            FOR i IN 1 .. coalesce(array_length(done_ids, 1), 0) LOOP
                UPDATE ledger_accounts SET balance = balance - done_deltas[i]
                WHERE id = done_ids[i];
            END LOOP;
            SELECT balance, no_negative, max_balance, frozen INTO STRICT leg
            FROM ledger_accounts WHERE id = acct.id FOR UPDATE;
            IF leg.frozen THEN
                RETURN jsonb_build_object('error', 'account_frozen',
                                          'details', jsonb_build_object('account_id', acct.id));
            ELSIF leg.max_balance IS NOT NULL AND leg.balance + acct.delta > leg.max_balance THEN
                RETURN jsonb_build_object('error', 'balance_limit_exceeded', 'details',
                    jsonb_build_object('account_id', acct.id, 'balance', leg.balance,
                                       'max_balance', leg.max_balance));
            END IF;
            RETURN jsonb_build_object('error', 'insufficient_funds', 'details',
                jsonb_build_object('account_id', acct.id, 'balance', leg.balance,
                                   'requested', -acct.delta));
        END IF;
        done_ids := done_ids || acct.id;
        done_deltas := done_deltas || acct.delta;
        balances := balances || jsonb_build_object(acct.id::text, new_balance);
    END LOOP;

    -- Hot accounts cannot refuse: take whichever shard no one holds, starting at the offset.
    FOR acct IN
        SELECT n.id, n.delta, a.shard_count
        FROM (SELECT l.id, sum(l.amount)::bigint AS delta
              FROM unnest(p_account_ids, p_amounts) AS l(id, amount) GROUP BY l.id) n
        JOIN ledger_accounts a ON a.id = n.id
        WHERE n.delta <> 0 AND a.shard_count > 1
        ORDER BY n.id
    LOOP
        UPDATE ledger_balance_shards SET balance = balance + acct.delta
        WHERE account_id = acct.id AND shard = (
            SELECT shard FROM ledger_balance_shards WHERE account_id = acct.id
            ORDER BY (shard + p_shard_offset) % acct.shard_count
            LIMIT 1 FOR UPDATE SKIP LOCKED);
        IF NOT FOUND THEN  -- every shard is busy: wait for one
            UPDATE ledger_balance_shards SET balance = balance + acct.delta
            WHERE account_id = acct.id AND shard = p_shard_offset % acct.shard_count;
        END IF;
    END LOOP;

    INSERT INTO ledger_transactions
        (kind, created_at, channel, store_id, device_id, actor, meta, reverses_id)
    VALUES (p_kind, p_created_at, p_channel, p_store_id, p_device_id, p_actor, p_meta,
            p_reverses_id)
    RETURNING id INTO tx_id;
    INSERT INTO ledger_postings (transaction_id, account_id, amount, unit)
    SELECT tx_id, l.id, l.amount, l.unit
    FROM unnest(p_account_ids, p_amounts, p_units) WITH ORDINALITY AS l(id, amount, unit, n)
    ORDER BY l.n;
    RETURN jsonb_build_object('transaction_id', tx_id, 'balances', balances);
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LEDGER_POST)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION ledger_post(text, timestamptz, text, bigint, bigint, text, jsonb, "
            "bigint, bigint[], bigint[], text[], int)"
        )
