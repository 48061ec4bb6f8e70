//! Bind values, and the OIDs of custom types (enums, domains) they name.
//!
//! diesel asks for a custom type's OID while it serializes the binds, synchronously; the
//! connection can only ask PostgreSQL asynchronously. So an OID the connection has not seen
//! yet is handed out as a placeholder, recorded, resolved with one query once the binds are
//! collected, and written over the placeholder (in the bind's type, and in the element type
//! of an array's binary header). Resolved OIDs are kept for the connection's lifetime, so a
//! type is looked up once.

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
/// in practice (it starts user OIDs at 16384 and would need four billion objects).
const FIRST_PLACEHOLDER: u32 = u32::MAX;

/// A custom type the cache did not know, and the placeholder (type, array type) OIDs handed
/// out for it.
pub(crate) type MissingType = (TypeName, (u32, u32));

/// The lookup diesel calls while collecting binds. It owns the cache for that while (diesel
/// takes the lookup as `&mut dyn PgMetadataLookup`, which may borrow nothing).
pub(crate) struct TypeLookup {
    pub(crate) cache: TypeCache,
    /// Types not in the cache: name and the placeholder (type, array type) handed out.
    pub(crate) missing: Vec<MissingType>,
}

impl TypeLookup {
    pub(crate) fn new(cache: TypeCache) -> Self {
        TypeLookup {
            cache,
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
        let placeholders = (FIRST_PLACEHOLDER - 2 * n, FIRST_PLACEHOLDER - 2 * n - 1);
        self.missing.push((key, placeholders));
        PgTypeMetadata::new(placeholders.0, placeholders.1)
    }
}

impl TypeCache {
    /// Looks up every missing type and writes the real OIDs over the placeholders in `binds`.
    pub(crate) async fn resolve(
        &mut self,
        client: &tokio_postgres::Client,
        missing: Vec<MissingType>,
        binds: &mut [BindValue],
    ) -> QueryResult<()> {
        // placeholder -> (real OID, whether the placeholder stood for an array type)
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
            real.insert(placeholder, (oids.0, false));
            real.insert(array_placeholder, (oids.1, true));
            self.known.insert((schema, name), oids);
        }
        for bind in binds {
            let Some(&(oid, is_array)) = real.get(&bind.oid) else {
                continue;
            };
            bind.oid = oid;
            // An array's binary header holds its element type at bytes 8..12.
            let header = bind.bytes.as_mut().and_then(|b| b.get_mut(8..12));
            if let (true, Some(element)) = (is_array, header) {
                let placeholder =
                    u32::from_be_bytes([element[0], element[1], element[2], element[3]]);
                if let Some(&(real_element, _)) = real.get(&placeholder) {
                    element.copy_from_slice(&real_element.to_be_bytes());
                }
            }
        }
        Ok(())
    }
}
