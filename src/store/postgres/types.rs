//! PostgreSQL encodings of `uuid` and `timestamptz`.
//!
//! The crate builds sqlx without its `uuid` and `chrono` features, so these two
//! small newtypes speak the binary wire format themselves (16 bytes; a big-endian
//! i64 of microseconds since 2000-01-01). This keeps the SQL free of casts.
//! Times are written at millisecond precision, the precision the API promises.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};
use uuid::Uuid;

use crate::store::codec::{from_ms, to_ms};

/// The built-in type OIDs (stable across PostgreSQL versions).
const UUID_OID: Oid = Oid(2950);
const UUID_ARRAY_OID: Oid = Oid(2951);
const TIMESTAMPTZ_OID: Oid = Oid(1184);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `uuid` column or parameter.
#[derive(Debug, Clone, Copy)]
pub struct PgUuid(pub Uuid);

impl Type<Postgres> for PgUuid {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(UUID_OID)
    }
}

impl PgHasArrayType for PgUuid {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(UUID_ARRAY_OID)
    }
}

impl Encode<'_, Postgres> for PgUuid {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

impl Decode<'_, Postgres> for PgUuid {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        let id = match value.format() {
            PgValueFormat::Binary => Uuid::from_slice(value.as_bytes()?)?,
            PgValueFormat::Text => value.as_str()?.parse()?,
        };
        Ok(PgUuid(id))
    }
}

/// A `timestamptz` column or parameter, at millisecond precision.
#[derive(Debug, Clone, Copy)]
pub struct PgTime(pub DateTime<Utc>);

impl Type<Postgres> for PgTime {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ_OID)
    }
}

impl Encode<'_, Postgres> for PgTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let micros = to_ms(self.0)
            .checked_mul(1000)
            .and_then(|us| us.checked_sub(PG_EPOCH_MICROS))
            .ok_or("time out of range for PostgreSQL")?;
        buf.extend_from_slice(&micros.to_be_bytes());
        Ok(IsNull::No)
    }
}

impl Decode<'_, Postgres> for PgTime {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        let t = match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                let micros = i64::from_be_bytes(bytes)
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or("timestamptz out of range")?;
                // Every stored time was written at ms precision; flooring keeps
                // a value written by hand (with µs) at the API's precision too.
                from_ms(micros.div_euclid(1000))?
            }
            PgValueFormat::Text => {
                // Only seen with the simple-query protocol, which this store does
                // not use; parsed anyway rather than failing.
                let s = value.as_str()?;
                let t = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")?;
                from_ms(t.timestamp_millis())?
            }
        };
        Ok(PgTime(t))
    }
}
