//! The schema migrations, embedded in the binary.
//!
//! `sqlx::migrate!` needs sqlx's `macros` feature, which this crate does not
//! enable (it would compile sqlx's proc-macro crate with every driver); so the
//! files are embedded with `include_str!` and handed to sqlx's [`Migrator`]
//! through a [`MigrationSource`]. The result is the same as the macro's: the
//! same `_sqlx_migrations` table and checksums, so `sqlx-cli` agrees with it.
//!
//! Adding a migration: add the file under `migrations/<db>/` AND its line
//! below; a unit test fails when the two disagree.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::StoreResult;

/// One migration file: version, description (as sqlx derives it from the
/// file name), SQL.
type Embedded = (i64, &'static str, &'static str);

/// `migrations/sqlite/`.
pub(super) const SQLITE: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "deliveries",
        include_str!("../../migrations/sqlite/0002_deliveries.sql"),
    ),
    (
        3,
        "claim by blockers",
        include_str!("../../migrations/sqlite/0003_claim_by_blockers.sql"),
    ),
    (
        4,
        "retention",
        include_str!("../../migrations/sqlite/0004_retention.sql"),
    ),
];

/// `migrations/postgres/`.
pub(super) const POSTGRES: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "deliveries",
        include_str!("../../migrations/postgres/0002_deliveries.sql"),
    ),
    (
        3,
        "claim by blockers",
        include_str!("../../migrations/postgres/0003_claim_by_blockers.sql"),
    ),
    (
        4,
        "retention",
        include_str!("../../migrations/postgres/0004_retention.sql"),
    ),
];

#[derive(Debug)]
struct Source(&'static [Embedded]);

impl<'s> MigrationSource<'s> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator for one back-end's embedded files.
pub(super) async fn migrator(files: &'static [Embedded]) -> StoreResult<Migrator> {
    Ok(Migrator::new(Source(files)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the directory is embedded, with the version and
    /// description sqlx would derive from its name, and nothing else is.
    fn check(dir: &str, embedded: &[Embedded]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut on_disk: Vec<(i64, String, String)> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
                let (version, description) = name.split_once('_').unwrap();
                (
                    version.parse().unwrap(),
                    description.replace('_', " "),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(i64, String, String)> = embedded
            .iter()
            .map(|&(v, d, s)| (v, d.to_owned(), s.to_owned()))
            .collect();
        assert_eq!(
            on_disk, embedded,
            "{dir} and src/store/migrations.rs disagree"
        );
    }

    #[test]
    fn every_sqlite_migration_is_embedded() {
        check("migrations/sqlite", SQLITE);
    }

    #[test]
    fn every_postgres_migration_is_embedded() {
        check("migrations/postgres", POSTGRES);
    }
}
