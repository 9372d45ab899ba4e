//! Staging into PostgreSQL (feature `postgres`).
//!
//! Each statement goes out with its parameter types (`query_typed`), in one
//! round trip and without a prepared statement, so the outbox works on any
//! connection of the owner's pool: staging is one statement, so one round
//! trip (the key's sequence and the row, the sequence written into the
//! event's JSON by the statement).

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use super::stage::{sealed, Row, StagingTransaction, HEADER_ROOM};
use super::{Outbox, OutboxError, Staged};
use crate::event::StateEvent;
use crate::sequence::Sequence;

/// The `LISTEN` channel of an outbox table: its name with `.` as `_`.
pub(crate) fn channel(table: &str) -> String {
    table.replace('.', "_")
}

impl Outbox {
    /// Creates the outbox tables in PostgreSQL if they are missing, with a
    /// trigger that notifies the relays (`NOTIFY`, delivered at commit) on
    /// every insert. Safe to run from several processes at once.
    pub async fn create_postgres(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<(), OutboxError> {
        let t = &self.tables;
        let (outbox, sequence, lease) = (&t.outbox, &t.sequence, &t.lease);
        let (unsent, sent) = (&t.unsent_index, &t.sent_index);
        let (trigger, function) = (&t.trigger, &t.trigger_function);
        let channel = channel(&t.given);
        let fail = |e| OutboxError::database("creating the tables", e);
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&t.given])
            .await
            .map_err(fail)?;
        tx.batch_execute(&format!(
            "
CREATE TABLE IF NOT EXISTS {outbox} (
    position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            text        NOT NULL UNIQUE,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb       NOT NULL,
    sequence      bigint      NOT NULL,
    schemaversion integer     NOT NULL,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    error         text
);
CREATE INDEX IF NOT EXISTS {unsent} ON {outbox} (position)
    WHERE sent_at IS NULL AND error IS NULL;
CREATE INDEX IF NOT EXISTS {sent} ON {outbox} (sent_at) WHERE sent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {sequence} (
    aggregatetype text   NOT NULL,
    aggregateid   text   NOT NULL,
    sequence      bigint NOT NULL,
    PRIMARY KEY (aggregatetype, aggregateid)
);
CREATE TABLE IF NOT EXISTS {lease} (
    id         integer     PRIMARY KEY CHECK (id = 1),
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS {trigger} ON {outbox};
CREATE TRIGGER {trigger} AFTER INSERT ON {outbox}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
        ))
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    async fn stage_postgres<T: StateEvent + Clone>(
        &self,
        tx: &Transaction<'_>,
        key: &T::Key,
        state: Option<&T>,
    ) -> Result<Staged, OutboxError> {
        let key_text = self.key_text::<T>(key)?;
        // The event is built, encoded and checked at sequence 1, then cut
        // where the sequence is written; the statement puts the real one in.
        let row = self.unsized_row::<T>(key, key_text, state, 1)?;
        if super::stage::holds_nul(&row.payload) {
            return Err(OutboxError::Unstorable {
                entity: T::ENTITY,
                key: row.aggregateid,
                reason: "a text holds the character U+0000, which PostgreSQL's `jsonb` payload \
                         column cannot store (remove it from the state, or stage this entity \
                         in SQLite)",
            });
        }
        let template = Template::cut(&row).ok_or_else(|| {
            OutboxError::database(
                "cutting the event at its sequence",
                std::io::Error::other("the encoded event does not hold its id and sequence"),
            )
        })?;
        let schemaversion = i32::try_from(row.schemaversion).unwrap_or(i32::MAX);
        let limit = i64::try_from(self.max_event_bytes).unwrap_or(i64::MAX);
        let params: [(&(dyn ToSql + Sync), Type); 10] = [
            (&row.aggregatetype, Type::TEXT),
            (&row.aggregateid, Type::TEXT),
            (&template.id_prefix, Type::TEXT),
            (&row.operation, Type::TEXT),
            (&template.before_id, Type::TEXT),
            (&template.before_sequence, Type::TEXT),
            (&template.after_sequence, Type::TEXT),
            (&schemaversion, Type::INT4),
            (&template.fixed_size, Type::INT8),
            (&limit, Type::INT8),
        ];
        // One statement, one round trip. The row lock of the key's counter
        // row is held until commit: a second writer of the same key waits
        // here, then reads the first one's value (READ COMMITTED re-checks
        // the updated row). The event is inserted only if its sequence is in
        // range and it fits with its digits; else the statement reports
        // the sequence taken, and staging fails as it did before.
        let t = &self.tables;
        let (sequence, inserted): (i64, bool) = tx
            .query_typed_one(
                &format!(
                    "WITH seq AS (
    INSERT INTO {sequence} AS s (aggregatetype, aggregateid, sequence) VALUES ($1, $2, 1)
    ON CONFLICT (aggregatetype, aggregateid) DO UPDATE SET sequence = s.sequence + 1
    RETURNING sequence
), event AS (
    INSERT INTO {outbox} (id, aggregatetype, aggregateid, type, payload, sequence,
                          schemaversion, headers)
    SELECT $3 || n.text, $1, $2, $4,
           ($5 || n.text || $6 || lpad(n.text, 20, '0') || $7)::jsonb,
           seq.sequence, $8, jsonb_build_object('Nats-Msg-Id', $3 || n.text)
    FROM seq CROSS JOIN LATERAL (SELECT seq.sequence::text AS text) AS n
    WHERE seq.sequence >= 0 AND $9 + 2 * length(n.text) <= $10
    RETURNING 1
)
SELECT seq.sequence, EXISTS (SELECT 1 FROM event) FROM seq",
                    sequence = t.sequence,
                    outbox = t.outbox,
                ),
                &params,
            )
            .await
            .and_then(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            // Named for its first step, where a lock wait, a deadlock or a
            // serialization failure (what an owner retries) happens.
            .map_err(|e| OutboxError::database("taking the key's next sequence", e))?;
        if !inserted {
            if sequence < 0 {
                return Err(OutboxError::SequenceOutOfRange {
                    entity: T::ENTITY,
                    key: row.aggregateid,
                    sequence,
                });
            }
            return Err(OutboxError::TooLarge {
                entity: T::ENTITY,
                key: row.aggregateid,
                size: template.size(sequence),
                limit: self.max_event_bytes,
            });
        }
        self.staged();
        Ok(Staged {
            id: format!("{}{sequence}", template.id_prefix),
            sequence: Sequence::new(sequence.unsigned_abs()),
        })
    }
}

/// An event's JSON encoded at sequence 1, cut around the places its
/// sequence is written: in its id (`"id":"<entity>:<key>:1"`) and in its
/// `sequence` attribute (20 zero-padded digits). Cut at positions found in
/// the JSON's structure, never by replacing a placeholder, so no key or
/// state can move a cut.
struct Template {
    /// `<entity>:<key>:`, the id before its sequence.
    id_prefix: String,
    /// The JSON up to the id's sequence digits.
    before_id: String,
    /// The JSON from the id's closing quote up to the padded sequence.
    before_sequence: String,
    /// The JSON after the padded sequence.
    after_sequence: String,
    /// The event's size without the id's digits, twice (in the JSON and in
    /// the id): the JSON's fixed parts, the padded sequence, the header
    /// room and the id prefix.
    fixed_size: i64,
}

impl Template {
    fn cut(row: &Row) -> Option<Self> {
        let json = &row.payload;
        let id_prefix = row.id.strip_suffix('1')?.to_owned();
        // Inside a JSON string every `"` follows a `\`, so `,"` starts
        // only between attributes: the first `,"id":` and `,"sequence":`
        // are the envelope's own (nothing nested comes before `data`,
        // which is written last).
        let quoted_id = serde_json::to_string(&row.id).ok()?;
        let id_attribute = format!(",\"id\":{quoted_id}");
        let id_end = json.find(&id_attribute)? + id_attribute.len() - 1;
        let id_digit = id_end - 1;
        let sequence_attribute = format!(",\"sequence\":\"{:020}\"", 1);
        let sequence_at = json.find(&sequence_attribute)?;
        let padded_start = sequence_at + sequence_attribute.len() - 21;
        let padded_end = padded_start + 20;
        if sequence_at < id_end || json.get(id_digit..id_end)? != "1" {
            return None;
        }
        let before_id = json.get(..id_digit)?.to_owned();
        let before_sequence = json.get(id_end..padded_start)?.to_owned();
        let after_sequence = json.get(padded_end..)?.to_owned();
        let fixed = before_id.len()
            + before_sequence.len()
            + 20
            + after_sequence.len()
            + HEADER_ROOM
            + id_prefix.len();
        Some(Self {
            id_prefix,
            before_id,
            before_sequence,
            after_sequence,
            fixed_size: i64::try_from(fixed).ok()?,
        })
    }

    /// The event's size at `sequence` (its digits are in the JSON and in
    /// the id), as [`Outbox::row`] counts it.
    fn size(&self, sequence: i64) -> usize {
        let digits = sequence.to_string().len();
        usize::try_from(self.fixed_size).unwrap_or(usize::MAX) + 2 * digits
    }
}

impl sealed::Sealed for Transaction<'_> {}

impl StagingTransaction for Transaction<'_> {
    type Staging<'a>
        = Pin<Box<dyn Future<Output = Result<Staged, OutboxError>> + Send + 'a>>
    where
        Self: 'a;

    fn stage_event<'a, T: StateEvent + Clone>(
        &'a self,
        outbox: &'a Outbox,
        key: &'a T::Key,
        state: Option<&'a T>,
    ) -> Self::Staging<'a> {
        Box::pin(outbox.stage_postgres(self, key, state))
    }
}

#[cfg(test)]
mod tests {
    use super::{Row, Template, HEADER_ROOM};

    /// A row as the encoder writes it at sequence 1, for a key that holds
    /// the text of both cuts, and a state that holds it too.
    fn hostile_row() -> Row {
        let key = r#"k","id":"c:k:1","sequence":"00000000000000000001"#;
        let id = format!("c:{key}:1");
        let payload = serde_json::json!({
            "specversion": "1.0",
            "id": id,
            "source": ",\"id\":\"c:x:1\"",
            "type": "c",
            "subject": key,
            "sequence": "00000000000000000001",
            "schemaversion": 1,
            "operation": "upsert",
            "data": { "id": "1", "sequence": "00000000000000000001" },
        });
        Row {
            headers: String::new(),
            id,
            aggregatetype: "c",
            aggregateid: key.to_owned(),
            operation: "upsert",
            sequence: 1,
            schemaversion: 1,
            // `json!` keeps insertion order only with `preserve_order`:
            // written by hand in the encoder's order.
            payload: format!(
                "{{\"specversion\":\"1.0\",\"id\":{},\"source\":{},\"type\":\"c\",\
                 \"subject\":{},\"sequence\":\"00000000000000000001\",\"schemaversion\":1,\
                 \"operation\":\"upsert\",\"data\":{}}}",
                payload["id"], payload["source"], payload["subject"], payload["data"]
            ),
        }
    }

    /// What the staging statement builds from the template at `sequence`.
    fn assembled(template: &Template, sequence: i64) -> String {
        format!(
            "{}{sequence}{}{sequence:020}{}",
            template.before_id, template.before_sequence, template.after_sequence
        )
    }

    #[test]
    fn the_cuts_are_the_envelope_s_own_whatever_the_key_and_state_hold() {
        let row = hostile_row();
        let template = Template::cut(&row).expect("the row holds its id and sequence");
        assert_eq!(assembled(&template, 1), row.payload);
        let at = assembled(&template, 9_223_372_036_854_775_807);
        assert_eq!(
            at,
            row.payload
                .replacen(":1\",\"source\"", ":9223372036854775807\",\"source\"", 1)
                .replacen(
                    ",\"sequence\":\"00000000000000000001\",\"schemaversion\"",
                    ",\"sequence\":\"09223372036854775807\",\"schemaversion\"",
                    1
                )
        );
        let value: serde_json::Value = serde_json::from_str(&at).expect("valid JSON");
        assert_eq!(
            value["id"],
            format!("{}9223372036854775807", template.id_prefix)
        );
        assert_eq!(value["subject"], row.aggregateid);
        assert_eq!(value["data"]["sequence"], "00000000000000000001");
        assert_eq!(
            template.size(1),
            row.payload.len() + HEADER_ROOM + row.id.len()
        );
        assert_eq!(
            template.size(9_223_372_036_854_775_807),
            at.len() + HEADER_ROOM + template.id_prefix.len() + 19
        );
    }
}
