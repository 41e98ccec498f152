"""ledger_post(): read each leg's account once, and take a hot account's shard by key.

Revision 0003 found a free shard by sorting all of a hot account's shard rows on every sale;
now a sale tries the shard its offset names, then the next ones, each a single-row
``FOR UPDATE SKIP LOCKED`` lookup by primary key; only if those are all busy does it look
through every shard, and it waits only if every one is held by another transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LEDGER_POST = """
CREATE OR REPLACE FUNCTION ledger_post(
    p_kind text, p_created_at timestamptz, p_channel text, p_store_id bigint,
    p_device_id bigint, p_actor text, p_meta jsonb, p_reverses_id bigint,
    p_account_ids bigint[], p_amounts bigint[], p_units text[], p_shard_offset int
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    acct record;
    lim record;
    new_balance bigint;
    got int;
    ids bigint[];
    deltas bigint[];
    shard_counts int[];
    done_ids bigint[] := '{}';
    done_deltas bigint[] := '{}';
    balances jsonb := '{}';
    tx_id bigint;
BEGIN
    -- Each account once: does it exist, in the legs' unit, and how does it keep its balance.
    FOR acct IN
        SELECT l.id, min(l.unit) AS unit, max(l.unit) AS other_unit,
               sum(l.amount)::bigint AS delta, a.unit AS account_unit, a.shard_count
        FROM unnest(p_account_ids, p_amounts, p_units) AS l(id, amount, unit)
        LEFT JOIN ledger_accounts a ON a.id = l.id
        GROUP BY l.id, a.unit, a.shard_count
        ORDER BY l.id
    LOOP
        IF acct.account_unit IS NULL THEN
            RETURN jsonb_build_object('error', 'account_not_found',
                                      'details', jsonb_build_object('account_id', acct.id));
        ELSIF acct.account_unit <> acct.unit OR acct.account_unit <> acct.other_unit THEN
            RETURN jsonb_build_object('error', 'unit_mismatch', 'details',
                jsonb_build_object('account_id', acct.id, 'account_unit', acct.account_unit));
        END IF;
        IF acct.delta <> 0 THEN
            ids := ids || acct.id;
            deltas := deltas || acct.delta;
            shard_counts := shard_counts || acct.shard_count;
        END IF;
    END LOOP;

    -- Accounts that can refuse, in account-id order: the one locking order.
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        CONTINUE WHEN shard_counts[i] > 1;
        UPDATE ledger_accounts SET balance = balance + deltas[i]
        WHERE id = ids[i] AND NOT frozen
          AND (NOT no_negative OR balance + deltas[i] >= 0)
          AND (max_balance IS NULL OR balance + deltas[i] <= max_balance)
        RETURNING balance INTO new_balance;
        IF NOT FOUND THEN
            FOR j IN 1 .. coalesce(array_length(done_ids, 1), 0) LOOP
                UPDATE ledger_accounts SET balance = balance - done_deltas[j]
                WHERE id = done_ids[j];
            END LOOP;
            SELECT balance, no_negative, max_balance, frozen INTO STRICT lim
            FROM ledger_accounts WHERE id = ids[i] FOR UPDATE;
            IF lim.frozen THEN
                RETURN jsonb_build_object('error', 'account_frozen',
                                          'details', jsonb_build_object('account_id', ids[i]));
            ELSIF lim.max_balance IS NOT NULL AND lim.balance + deltas[i] > lim.max_balance THEN
                RETURN jsonb_build_object('error', 'balance_limit_exceeded', 'details',
                    jsonb_build_object('account_id', ids[i], 'balance', lim.balance,
                                       'max_balance', lim.max_balance));
            END IF;
            RETURN jsonb_build_object('error', 'insufficient_funds', 'details',
                jsonb_build_object('account_id', ids[i], 'balance', lim.balance,
                                   'requested', -deltas[i]));
        END IF;
        done_ids := done_ids || ids[i];
        done_deltas := done_deltas || deltas[i];
        balances := balances || jsonb_build_object(ids[i]::text, new_balance);
    END LOOP;

    -- Hot accounts cannot refuse: take the shard the offset names, or the next free one.
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        CONTINUE WHEN shard_counts[i] = 1;
        got := NULL;
        FOR k IN 0 .. least(shard_counts[i], 8) - 1 LOOP
            SELECT shard INTO got FROM ledger_balance_shards
            WHERE account_id = ids[i] AND shard = (p_shard_offset + k) % shard_counts[i]
            FOR UPDATE SKIP LOCKED;
            EXIT WHEN got IS NOT NULL;
        END LOOP;
        IF got IS NULL THEN
            -- Rare: look at every shard. SKIP LOCKED still returns a shard this transaction
            -- holds from an earlier posting, so a batch never waits on itself.
            SELECT shard INTO got FROM ledger_balance_shards WHERE account_id = ids[i]
            ORDER BY (shard + p_shard_offset) % shard_counts[i]
            LIMIT 1 FOR UPDATE SKIP LOCKED;
        END IF;
        UPDATE ledger_balance_shards SET balance = balance + deltas[i]
        WHERE account_id = ids[i]
          AND shard = coalesce(got, p_shard_offset % shard_counts[i]);  -- all busy: wait
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
        from importlib import import_module

        previous = import_module("migrations.versions.20261123_0003_ledger_post_function")
        op.execute(previous.LEDGER_POST)
