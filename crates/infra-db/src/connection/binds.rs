//! Bind values, and the OIDs of custom types (enums, domains) they name.
//!
//! diesel asks for a custom type's OID while it serializes the binds, synchronously; the
//! connection can only ask PostgreSQL asynchronously. So an OID the connection has not seen
//! yet is handed out as a placeholder, recorded, resolved with one query once the binds are
//! collected, and written over the placeholder: in the bind's type, and wherever the bind's
//! bytes hold it (an array's element type, a record's field types). Those places are found by
//! collecting the binds a second time with other placeholders and comparing the two: only
//! placeholder bytes differ. Resolved OIDs are kept for the connection's lifetime, so a type
//! is looked up once and later queries pay for neither pass.

use std::collections::HashMap;

use bytes::BytesMut;
use diesel::QueryResult;
use diesel::pg::{PgMetadataLookup, PgTypeMetadata};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};

use super::pg_error::query_error;

/// A bind: its type OID and its binary value (`None` for `NULL`).
#[derive(Debug)]
pub(crate) struct BindValue {
    pub(crate) oid: u32,
    pub(crate) bytes: Option<Vec<u8>>,
}

impl ToSql for BindValue {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.bytes {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    // The statement was prepared with these very OIDs: diesel already chose the encoding.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The tokio-postgres type of an OID, for preparing a statement with its bind types.
pub(crate) fn pg_type(oid: u32) -> Type {
    Type::from_oid(oid).unwrap_or_else(|| {
        Type::new(
            format!("custom_type_{oid}"),
            oid,
            Kind::Simple,
            "public".into(),
        )
    })
}

/// (schema, type name): how diesel names a custom type.
type TypeName = (Option<String>, String);

/// The custom types' OIDs a connection has resolved: (type, array type).
#[derive(Default)]
pub(crate) struct TypeCache {
    known: HashMap<TypeName, (u32, u32)>,
}

/// Placeholders count down from the top of the OID space, where PostgreSQL allocates none
/// in practice (it starts user OIDs at 16384 and would need four billion objects). The second
/// pass uses another range, so that the bytes holding a placeholder differ between passes.
pub(crate) const FIRST_PASS: u32 = u32::MAX;
pub(crate) const SECOND_PASS: u32 = u32::MAX - (1 << 24);

/// A custom type the cache did not know, and the placeholder (type, array type) OIDs handed
/// out for it.
pub(crate) type MissingType = (TypeName, (u32, u32));

/// The lookup diesel calls while collecting binds. It owns the cache for that while (diesel
/// takes the lookup as `&mut dyn PgMetadataLookup`, which may borrow nothing).
pub(crate) struct TypeLookup {
    pub(crate) cache: TypeCache,
    /// The first placeholder handed out ([`FIRST_PASS`] or [`SECOND_PASS`]).
    base: u32,
    /// Types not in the cache: name and the placeholder (type, array type) handed out.
    pub(crate) missing: Vec<MissingType>,
}

impl TypeLookup {
    pub(crate) fn new(cache: TypeCache, base: u32) -> Self {
        TypeLookup {
            cache,
            base,
            missing: Vec::new(),
        }
    }
}

impl PgMetadataLookup for TypeLookup {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
        let key = (schema.map(str::to_owned), type_name.to_owned());
        if let Some(&(oid, array_oid)) = self.cache.known.get(&key) {
            return PgTypeMetadata::new(oid, array_oid);
        }
        if let Some((_, (oid, array_oid))) = self.missing.iter().find(|(k, _)| *k == key) {
            return PgTypeMetadata::new(*oid, *array_oid);
        }
        let n = u32::try_from(self.missing.len()).unwrap_or(u32::MAX / 2);
        let placeholders = (self.base - 2 * n, self.base - 2 * n - 1);
        self.missing.push((key, placeholders));
        PgTypeMetadata::new(placeholders.0, placeholders.1)
    }
}

/// Where a bind's bytes hold a placeholder OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Patch {
    bind: usize,
    at: usize,
    placeholder: u32,
}

/// Finds the placeholders in the binds of the first pass by comparing them with the second
/// pass's: wherever they differ, the first holds a first-pass placeholder and the second the
/// matching second-pass one.
pub(crate) fn placeholder_patches(
    first: &[BindValue],
    second: &[BindValue],
) -> QueryResult<Vec<Patch>> {
    let unexpected = || {
        diesel::result::Error::SerializationError(
            "a bind changed between two serializations other than in its custom type OIDs".into(),
        )
    };
    if first.len() != second.len() {
        return Err(unexpected());
    }
    let mut patches = Vec::new();
    for (bind, (a, b)) in first.iter().zip(second).enumerate() {
        let (a, b) = match (&a.bytes, &b.bytes) {
            (Some(a), Some(b)) if a.len() == b.len() => (a, b),
            (None, None) => continue,
            _ => return Err(unexpected()),
        };
        let mut at = 0;
        while at < a.len() {
            if a[at] == b[at] {
                at += 1;
                continue;
            }
            // The first differing byte is the first byte of a big-endian placeholder: the
            // two ranges share their lowest byte only if equal below 2^24, and they are not.
            let word = |bytes: &[u8]| {
                bytes
                    .get(at..at + 4)
                    .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            };
            let (Some(pa), Some(pb)) = (word(a), word(b)) else {
                return Err(unexpected());
            };
            if pa.wrapping_sub(pb) != FIRST_PASS - SECOND_PASS || pa <= SECOND_PASS {
                return Err(unexpected());
            }
            patches.push(Patch {
                bind,
                at,
                placeholder: pa,
            });
            at += 4;
        }
    }
    Ok(patches)
}

impl TypeCache {
    /// Looks up every missing type and writes the real OIDs over the placeholders in `binds`:
    /// their types, and the places `patches` found in their bytes.
    pub(crate) async fn resolve(
        &mut self,
        client: &tokio_postgres::Client,
        missing: Vec<MissingType>,
        patches: &[Patch],
        binds: &mut [BindValue],
    ) -> QueryResult<()> {
        let mut real = HashMap::with_capacity(missing.len() * 2);
        for ((schema, name), (placeholder, array_placeholder)) in missing {
            let row = match &schema {
                Some(schema) => {
                    client
                        .query_opt(
                            "SELECT t.oid, t.typarray FROM pg_type t \
                         JOIN pg_namespace n ON t.typnamespace = n.oid \
                         WHERE t.typname = $1 AND n.nspname = $2",
                            &[&name, schema],
                        )
                        .await
                }
                None => {
                    client
                        .query_opt(
                            "SELECT oid, typarray FROM pg_type \
                         WHERE typname = $1 AND pg_type_is_visible(oid)",
                            &[&name],
                        )
                        .await
                }
            }
            .map_err(query_error)?;
            let Some(row) = row else {
                let shown = match &schema {
                    Some(schema) => format!("{schema}.{name}"),
                    None => name,
                };
                return Err(diesel::result::Error::SerializationError(
                    format!("PostgreSQL has no type named `{shown}`").into(),
                ));
            };
            let oids: (u32, u32) = (row.get(0), row.get(1));
            real.insert(placeholder, oids.0);
            real.insert(array_placeholder, oids.1);
            self.known.insert((schema, name), oids);
        }
        for bind in binds.iter_mut() {
            if let Some(&oid) = real.get(&bind.oid) {
                bind.oid = oid;
            }
        }
        for patch in patches {
            let (Some(&oid), Some(bytes)) = (
                real.get(&patch.placeholder),
                binds[patch.bind].bytes.as_mut(),
            ) else {
                continue;
            };
            bytes[patch.at..patch.at + 4].copy_from_slice(&oid.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(bytes: &[u8]) -> BindValue {
        BindValue {
            oid: 0,
            bytes: Some(bytes.to_vec()),
        }
    }

    #[test]
    fn placeholders_are_found_where_the_passes_differ() {
        let a = FIRST_PASS.to_be_bytes();
        let b = SECOND_PASS.to_be_bytes();
        let a2 = (FIRST_PASS - 2).to_be_bytes();
        let b2 = (SECOND_PASS - 2).to_be_bytes();
        // An array header (ndim, flags, element OID at 8) and a record with two typed fields.
        let first = [
            bind(&[&[0, 0, 0, 1, 0, 0, 0, 0][..], &a, &[9, 9]].concat()),
            bind(&[&[0, 0, 0, 2][..], &a2, &[1, 2, 3], &a, &[7]].concat()),
            BindValue {
                oid: 0,
                bytes: None,
            },
        ];
        let second = [
            bind(&[&[0, 0, 0, 1, 0, 0, 0, 0][..], &b, &[9, 9]].concat()),
            bind(&[&[0, 0, 0, 2][..], &b2, &[1, 2, 3], &b, &[7]].concat()),
            BindValue {
                oid: 0,
                bytes: None,
            },
        ];
        let patches = placeholder_patches(&first, &second).unwrap();
        assert_eq!(
            patches,
            [
                Patch {
                    bind: 0,
                    at: 8,
                    placeholder: FIRST_PASS
                },
                Patch {
                    bind: 1,
                    at: 4,
                    placeholder: FIRST_PASS - 2
                },
                Patch {
                    bind: 1,
                    at: 11,
                    placeholder: FIRST_PASS
                },
            ]
        );
    }

    #[test]
    fn any_other_difference_is_an_error() {
        assert!(placeholder_patches(&[bind(&[1, 2, 3, 4])], &[bind(&[1, 2, 3, 5])]).is_err());
        assert!(placeholder_patches(&[bind(&[1, 2])], &[bind(&[1, 2, 3])]).is_err());
    }
}
