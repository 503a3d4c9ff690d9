//! A PostgreSQL database of its own for each test, migrated.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

/// A fresh database; `pool` is the test's own handle on it (the service
/// under test opens its own pool, so stopping the service leaves this one
/// open).
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates `mm_test_<uuid>` (or `TEST_DATABASE_PREFIX` + uuid) on the
    /// PostgreSQL at `TEST_DATABASE_URL` (an
    /// admin URL; `scripts/test` starts a private instance and sets it), as
    /// a copy of a database migrated once per test process: the same as
    /// migrating each one, without running the migrations hundreds of times.
    ///
    /// # Panics
    ///
    /// When `TEST_DATABASE_URL` is unset or the server cannot be reached:
    /// these tests need a real PostgreSQL.
    pub async fn fresh() -> TestDatabase {
        let admin = admin_options();
        let name = format!("{}{}", database_name_prefix(), Uuid::new_v4().simple());
        let template = migrated_template().await;
        execute_as_admin(
            &admin,
            &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""),
        )
        .await;
        let options = admin.database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .expect("Failed to connect to the test database");
        TestDatabase { name, url, pool }
    }

    /// Creates an empty `mm_test_<uuid>`, not even migrated: for a service
    /// binary of another version (the benches' baseline), which applies
    /// the migrations it knows itself.
    ///
    /// # Panics
    ///
    /// As [`TestDatabase::fresh`].
    pub async fn empty() -> TestDatabase {
        let admin = admin_options();
        let name = format!("{}{}", database_name_prefix(), Uuid::new_v4().simple());
        execute_as_admin(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
        let url = admin.database(&name).to_url_lossy().to_string();
        TestDatabase::connect(name, url).await
    }

    /// Closes this handle and drops the database, with whatever connections
    /// others still hold on it (`WITH (FORCE)`). Tests leave theirs to
    /// `scripts/test`; a bench that makes several cleans up after itself.
    ///
    /// # Panics
    ///
    /// When the database cannot be dropped.
    pub async fn drop_database(self) {
        self.pool.close().await;
        execute_as_admin(
            &admin_options(),
            &format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name),
        )
        .await;
    }

    /// Another handle on the same database, as a second service instance (or
    /// a later process) would have.
    pub async fn connect_again(&self) -> TestDatabase {
        TestDatabase::connect(self.name.clone(), self.url.clone()).await
    }

    pub(crate) async fn connect(name: String, url: String) -> TestDatabase {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("Failed to connect to the test database again");
        TestDatabase { name, url, pool }
    }
}

/// What every database this process makes is named with: `mm_test_`, or
/// `TEST_DATABASE_PREFIX`. `scripts/test` drops every `mm_test_` database
/// a previous run left; `scripts/bench` gives each of its runs a prefix of
/// its own (`mm_bench_<pid>_`), so that neither drops a database the other
/// is using on the same PostgreSQL.
///
/// # Panics
///
/// When `TEST_DATABASE_PREFIX` holds anything but lowercase letters,
/// digits and `_` (it becomes part of a quoted SQL identifier).
fn database_name_prefix() -> String {
    let prefix = std::env::var("TEST_DATABASE_PREFIX").unwrap_or_else(|_| "mm_test_".to_owned());
    assert!(
        !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "TEST_DATABASE_PREFIX must be lowercase letters, digits and _: {prefix:?}"
    );
    prefix
}

fn admin_options() -> PgConnectOptions {
    let admin_url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts a private PostgreSQL",
    );
    PgConnectOptions::from_str(&admin_url).expect("TEST_DATABASE_URL is a valid URL")
}

async fn execute_as_admin(admin: &PgConnectOptions, statement: &str) {
    let mut connection = sqlx::PgConnection::connect_with(admin)
        .await
        .expect("Failed to connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    let _ = connection.close().await;
}

/// The name of a database this process migrated, which every test database
/// copies. Named like the test databases, so the script that drops those
/// drops it with them; it has no open connection once made (PostgreSQL copies only such
/// templates).
async fn migrated_template() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let admin = admin_options();
            let name = format!(
                "{}template_{}",
                database_name_prefix(),
                Uuid::new_v4().simple()
            );
            execute_as_admin(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
            let mut connection = sqlx::PgConnection::connect_with(&admin.database(&name))
                .await
                .expect("Failed to connect to the template database");
            marauders_map::database::migrator()
                .run(&mut connection)
                .await
                .expect("Failed to migrate the template database");
            let _ = connection.close().await;
            name
        })
        .await
}
