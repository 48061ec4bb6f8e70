//! `DbConnection`, the pool's connection, against the real PostgreSQL: what diesel users rely
//! on beyond `SELECT 1` — custom types (and arrays of them), statements cached once, `NULL`s,
//! columns by name, errors with their kinds, transactions, and a killed session.

mod support;

use std::io::Write;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use infra_db::DbConnection;
use support::TestDb;

#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(name = "mood"))]
struct MoodType;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = MoodType)]
enum Mood {
    Happy,
    Sad,
}

impl ToSql<MoodType, Pg> for Mood {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(match self {
            Mood::Happy => b"happy",
            Mood::Sad => b"sad",
        })?;
        Ok(IsNull::No)
    }
}

impl FromSql<MoodType, Pg> for Mood {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes() {
            b"happy" => Ok(Mood::Happy),
            b"sad" => Ok(Mood::Sad),
            other => Err(format!("not a mood: {other:?}").into()),
        }
    }
}

/// A named composite of a custom type and an integer: its binary form names each field's
/// type OID, so the enum's OID must be right inside the bind's bytes too.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(name = "entry"))]
struct EntryType;

#[derive(Debug, diesel::expression::AsExpression)]
#[diesel(sql_type = EntryType)]
struct Entry(Mood, i32);

impl ToSql<EntryType, Pg> for Entry {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        diesel::serialize::WriteTuple::<(MoodType, Integer)>::write_tuple(&(self.0, self.1), out)
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Diary {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = MoodType)]
    mood: Mood,
    #[diesel(sql_type = Array<MoodType>)]
    week: Vec<Mood>,
    #[diesel(sql_type = Nullable<Text>)]
    note: Option<String>,
}

async fn connect(db: &TestDb) -> DbConnection {
    DbConnection::establish(&db.url).await.expect("connects")
}

#[tokio::test]
async fn custom_types_arrays_nulls_and_columns_by_name() {
    let db = TestDb::create("conn_types").await;
    let mut conn = connect(&db).await;
    conn.batch_execute(
        "CREATE TYPE mood AS ENUM ('happy', 'sad');
         CREATE TABLE diary (id serial PRIMARY KEY, mood mood NOT NULL, week mood[] NOT NULL, note text)",
    )
    .await
    .unwrap();

    for (mood, week, note) in [
        (Mood::Sad, vec![Mood::Happy, Mood::Sad], Some("rain")),
        (Mood::Happy, vec![], None),
    ] {
        diesel::sql_query("INSERT INTO diary (mood, week, note) VALUES ($1, $2, $3)")
            .bind::<MoodType, _>(mood)
            .bind::<Array<MoodType>, _>(week)
            .bind::<Nullable<Text>, _>(note)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // Columns come back in another order than the struct's: they are found by name.
    let rows: Vec<Diary> = diesel::sql_query(
        "SELECT note, week, mood, id FROM diary WHERE mood = ANY($1) ORDER BY id",
    )
    .bind::<Array<MoodType>, _>(vec![Mood::Happy, Mood::Sad])
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            Diary {
                id: 1,
                mood: Mood::Sad,
                week: vec![Mood::Happy, Mood::Sad],
                note: Some("rain".into()),
            },
            Diary {
                id: 2,
                mood: Mood::Happy,
                week: vec![],
                note: None,
            },
        ]
    );
    // A second connection resolves the type afresh and reads the same.
    let mut other = connect(&db).await;
    let sad: i64 = diesel::select(
        diesel::dsl::sql::<BigInt>("count(*) FROM diary WHERE mood = ")
            .bind::<MoodType, _>(Mood::Sad),
    )
    .get_result(&mut other)
    .await
    .unwrap();
    assert_eq!(sad, 1);

    // A composite holding the enum, on a connection that has not met either type yet.
    conn.batch_execute("CREATE TYPE entry AS (mood mood, n int)")
        .await
        .unwrap();
    let mut fresh = connect(&db).await;
    let (mood, n): (String, i32) = diesel::select((
        diesel::dsl::sql::<Text>("(")
            .bind::<EntryType, _>(Entry(Mood::Sad, 7))
            .sql(").mood::text"),
        diesel::dsl::sql::<Integer>("(")
            .bind::<EntryType, _>(Entry(Mood::Happy, 7))
            .sql(").n"),
    ))
    .get_result(&mut fresh)
    .await
    .unwrap();
    assert_eq!((mood.as_str(), n), ("sad", 7));
    drop((conn, other, fresh));
    db.drop_now().await;
}

#[tokio::test]
async fn statements_are_prepared_once_per_connection() {
    let db = TestDb::create("conn_statements").await;
    let mut conn = connect(&db).await;
    for n in 0..5 {
        let got: i32 = diesel::select(n.into_sql::<Integer>())
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(got, n);
        let text: String = diesel::sql_query("SELECT $1::text AS text")
            .bind::<Text, _>(format!("n{n}"))
            .get_result::<Named>(&mut conn)
            .await
            .unwrap()
            .text;
        assert_eq!(text, format!("n{n}"));
        let boxed: String = diesel::select(format!("n{n}").into_sql::<Text>())
            .into_boxed()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(boxed, format!("n{n}"));
    }
    // A typed query is cached by its type, a boxed one by its SQL; `sql_query` is one diesel
    // marks unsafe to cache: prepared per call and closed after it, never piling up.
    let prepared: Vec<Named> = diesel::sql_query(
        "SELECT statement || ' ' || parameter_types::text AS text FROM pg_prepared_statements \
         WHERE statement IN ('SELECT $1', 'SELECT $1::text AS text') ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let texts: Vec<&str> = prepared.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["SELECT $1 {integer}", "SELECT $1 {text}"]);
    drop(conn);
    db.drop_now().await;
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = Text)]
    text: String,
}

#[tokio::test]
async fn errors_keep_their_kind_and_transactions_roll_back() {
    let db = TestDb::create("conn_errors").await;
    let mut conn = connect(&db).await;
    conn.batch_execute("CREATE TABLE names (name text PRIMARY KEY)")
        .await
        .unwrap();
    let insert = |name: &'static str| {
        diesel::sql_query("INSERT INTO names VALUES ($1)").bind::<Text, _>(name)
    };
    insert("ada").execute(&mut conn).await.unwrap();
    match insert("ada").execute(&mut conn).await {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
            assert_eq!(info.constraint_name(), Some("names_pkey"));
            assert_eq!(info.table_name(), Some("names"));
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }

    let outcome: Result<(), DieselError> = conn
        .transaction(async |c| {
            insert("grace").execute(c).await?;
            Err(DieselError::RollbackTransaction)
        })
        .await;
    assert!(matches!(outcome, Err(DieselError::RollbackTransaction)));
    let count: i64 = diesel::select(diesel::dsl::sql::<BigInt>("count(*) FROM names"))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1, "the rolled-back insert is gone");
    assert!(!conn.is_broken());
    drop(conn);
    db.drop_now().await;
}

#[tokio::test]
async fn a_session_the_server_ends_is_closed_and_broken() {
    let db = TestDb::create("conn_killed").await;
    let mut conn = connect(&db).await;
    let mut admin = connect(&db).await;
    let pid: i32 = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<Integer, _>(pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let err = diesel::select(1.into_sql::<Integer>())
        .get_result::<i32>(&mut conn)
        .await
        .expect_err("the session is gone");
    let mapped = infra_db::map_diesel_error(err);
    assert_eq!(
        mapped.kind(),
        infra_core::ErrorKind::Unavailable,
        "{mapped}"
    );
    assert!(conn.is_closed());
    assert!(conn.is_broken());
    drop((conn, admin));
    db.drop_now().await;
}
