//! Rebuilding projections from offset 0: the result is identical to the
//! incrementally built one, read marks survive, nobody is notified twice,
//! only professors may do it — over HTTP and from the command line.

use marauders_map::domain::{Location, Role, Severity};
use marauders_projections::Projection;
use marauders_testkit::{EVENTUALLY, ReportIncident, TestApp, TestUser, eventually};
use serde_json::Value;

async fn table(app: &TestApp, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&app.database.pool)
        .await
        .unwrap()
}

/// Every row of every projection, as JSON text.
async fn snapshot(app: &TestApp) -> [Vec<String>; 4] {
    [
        table(
            app,
            "SELECT row_to_json(r)::text FROM read_incidents r ORDER BY id",
        )
        .await,
        table(
            app,
            "SELECT row_to_json(c)::text FROM read_comments c ORDER BY id",
        )
        .await,
        table(
            app,
            "SELECT row_to_json(n)::text FROM notifications n ORDER BY id",
        )
        .await,
        table(
            app,
            "SELECT row_to_json(a)::text FROM audit_log a ORDER BY log_offset",
        )
        .await,
    ]
}

/// Waits until every projection runs with no lag; the list.
pub async fn wait_until_caught_up(app: &TestApp, professor: &TestUser) -> Value {
    eventually("every projection catches up", EVENTUALLY, || async {
        let list = app.projections(professor).await.assert_status(200).body;
        let done = list
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running" && p["lag"] == 0);
        done.then_some(list)
    })
    .await
}

/// Oliver reports three bludgers; Dumbledore comments on each; Oliver
/// raises each to CRITICAL. Every projection then has rows.
async fn quidditch_season(app: &TestApp) -> (TestUser, TestUser) {
    let oliver = app.user_named("oliver", Role::Student).await;
    let dumbledore = app.user_named("dumbledore", Role::Professor).await;
    for n in 0..3 {
        let bludger = app
            .reported(
                &oliver,
                ReportIncident::new(&format!("Bludger {n}")).location(Location::QuidditchPitch),
            )
            .await;
        app.comment(&dumbledore, bludger.id, "Careful")
            .await
            .assert_status(201);
        app.change_severity(&oliver, bludger.id, Severity::Critical)
            .await
            .assert_status(200);
    }
    let list = wait_until_caught_up(app, &dumbledore).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    (oliver, dumbledore)
}

async fn rebuild_every_projection(app: &TestApp, professor: &TestUser) {
    for name in ["read-model", "notifications", "audit"] {
        app.rebuild_projection(professor, name)
            .await
            .assert_status(202);
        wait_until_caught_up(app, professor).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_reproduces_every_projection_exactly() {
    let app = TestApp::spawn().await;
    let (_, dumbledore) = quidditch_season(&app).await;
    let before = snapshot(&app).await;
    assert!(
        before.iter().all(|rows| !rows.is_empty()),
        "every projection has rows"
    );

    rebuild_every_projection(&app, &dumbledore).await;

    assert_eq!(
        snapshot(&app).await,
        before,
        "identical to the incrementally built projections"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_what_was_read() {
    let app = TestApp::spawn().await;
    let (oliver, dumbledore) = quidditch_season(&app).await;
    let mine = app.notifications(&oliver, "").await;
    let read_one = mine.body["items"][0]["id"].as_str().unwrap().to_owned();
    app.mark_read(&oliver, &read_one).await.assert_status(204);

    rebuild_every_projection(&app, &dumbledore).await;

    let after = app.notifications(&oliver, "unread=true").await;
    assert_eq!(
        after.body["unreadCount"],
        mine.body["unreadCount"].as_i64().unwrap() - 1,
        "the read mark survived"
    );
    app.stop().await;
}

#[tokio::test]
async fn only_professors_see_and_rebuild_projections() {
    let app = TestApp::spawn().await;
    let wood = app.user(Role::Prefect).await;

    app.rebuild_projection(&wood, "read-model")
        .await
        .assert_error(403, "forbidden");
    app.projections(&wood).await.assert_error(403, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn rebuilding_a_projection_that_does_not_exist_is_404() {
    let app = TestApp::spawn().await;
    let hooch = app.user(Role::Professor).await;

    app.rebuild_projection(&hooch, "horcruxes")
        .await
        .assert_error(404, "not_found");
    app.stop().await;
}

/// Runs the `marauders-map` binary with `args` against the app's database.
fn run_binary(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_marauders-map"))
        .args(args)
        .env("DATABASE_URL", &app.database.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

/// An app with one incident, every projection caught up; the professor.
async fn app_with_a_ghost() -> (TestApp, TestUser) {
    let app = TestApp::spawn().await;
    let binns = app.user(Role::Professor).await;
    app.reported(&binns, ReportIncident::new("Ghost in the classroom"))
        .await;
    wait_until_caught_up(&app, &binns).await;
    (app, binns)
}

#[tokio::test]
async fn the_command_line_lists_the_projections() {
    let (app, _) = app_with_a_ghost().await;

    let listed = run_binary(&app, &["projections"]);

    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.lines()
            .any(|line| line.starts_with("read-model") && line.contains("incident-events")),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_command_line_rebuilds_a_projection_to_the_same_rows() {
    let (app, _) = app_with_a_ghost().await;
    let before = snapshot(&app).await;

    let rebuilt = run_binary(&app, &["projection", "rebuild", "read-model"]);

    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&rebuilt.stdout).trim(),
        "read-model rebuilt: 1 events replayed, now at offset 1"
    );
    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn the_command_line_refuses_a_projection_that_does_not_exist() {
    let (app, _) = app_with_a_ghost().await;

    let unknown = run_binary(&app, &["projection", "rebuild", "quidditch"]);

    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no projection named 'quidditch'"));
    app.stop().await;
}

/// The switch-over race: while rebuilds wait just before their switch, the
/// live projectors run ahead of them — a report is applied (so a reader
/// with its `minOffset` passes) and a notification is marked read. Reads
/// through the switch never find the report missing, the offset a reader
/// can observe never goes back, and the read mark survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_happens_while_a_rebuild_waits_to_switch_survives_the_switch() {
    let app = TestApp::spawn().await;
    let (oliver, dumbledore) = quidditch_season(&app).await;
    let unread_before = app.notifications(&oliver, "unread=true").await.body["unreadCount"]
        .as_i64()
        .unwrap();
    app.rebuild_switch_hold.hold();
    for name in ["read-model", "notifications"] {
        app.rebuild_projection(&dumbledore, name)
            .await
            .assert_status(202);
    }
    app.rebuild_switch_hold.wait_until_held(2).await;

    let late = app
        .reported(
            &oliver,
            ReportIncident::new("Reported while a rebuild waits"),
        )
        .await;
    let read_late = format!("/api/incidents/{}?minOffset={}", late.id, late.offset);
    app.get_as(&oliver, &read_late).await.assert_status(200);
    let observed = app.projections(&dumbledore).await.body[0]["storedOffset"]
        .as_u64()
        .unwrap();
    assert!(observed > late.offset);
    let mine = app.notifications(&oliver, "unread=true").await;
    let read_one = mine.body["items"][0]["id"].as_str().unwrap().to_owned();
    app.mark_read(&oliver, &read_one).await.assert_status(204);

    app.rebuild_switch_hold.release();
    eventually("both rebuilds switch over", EVENTUALLY, || async {
        let read = app.get_as(&oliver, &read_late).await;
        assert_eq!(
            read.status.as_u16(),
            200,
            "through the switch: {}",
            read.body
        );
        let list = app.projections(&dumbledore).await.assert_status(200).body;
        let offset = list[0]["storedOffset"].as_u64().unwrap();
        assert!(
            offset >= observed,
            "the read model's offset went back from {observed} to {offset}"
        );
        let done = list
            .as_array()
            .unwrap()
            .iter()
            .all(|projection| projection["state"] != "rebuilding");
        done.then_some(())
    })
    .await;
    app.get_as(&oliver, &read_late).await.assert_status(200);
    let after = app.notifications(&oliver, "unread=true").await;
    assert_eq!(
        after.body["unreadCount"].as_i64().unwrap(),
        unread_before - 1,
        "the read mark made while the rebuild waited survived: {}",
        after.body
    );
    app.stop().await;
}

/// One rebuild of a projection at a time, across instances: the second
/// request, on another instance, is refused while the first runs, which
/// both instances report; the first completes, and then a rebuild may start
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_asked_to_rebuild_one_projection_at_once_rebuild_it_once() {
    let app = TestApp::spawn().await;
    let other = app.second_instance().await;
    let (_, dumbledore) = quidditch_season(&app).await;
    let before = snapshot(&app).await;
    app.rebuild_switch_hold.hold();

    app.rebuild_projection(&dumbledore, "read-model")
        .await
        .assert_status(202);
    app.rebuild_switch_hold.wait_until_held(1).await;
    other
        .rebuild_projection(&dumbledore, "read-model")
        .await
        .assert_error(409, "conflict");
    app.rebuild_projection(&dumbledore, "read-model")
        .await
        .assert_error(409, "conflict");
    let seen_by_other = other.projections(&dumbledore).await.assert_status(200).body;
    assert_eq!(seen_by_other[0]["name"], "read-model");
    assert_eq!(seen_by_other[0]["state"], "rebuilding", "{seen_by_other}");
    // Another projection is not held up by it.
    other
        .rebuild_projection(&dumbledore, "audit")
        .await
        .assert_status(202);

    app.rebuild_switch_hold.release();
    wait_until_caught_up(&app, &dumbledore).await;
    assert_eq!(
        snapshot(&app).await,
        before,
        "rebuilt once, to the same rows"
    );
    other
        .rebuild_projection(&dumbledore, "read-model")
        .await
        .assert_status(202);
    wait_until_caught_up(&other, &dumbledore).await;
    other.stop().await;
    app.stop().await;
}

/// While a rebuild runs, the list says how far it has come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_in_progress_reports_how_far_it_has_come() {
    let app = TestApp::spawn().await;
    let (_, dumbledore) = quidditch_season(&app).await;
    app.rebuild_switch_hold.hold();
    app.rebuild_projection(&dumbledore, "read-model")
        .await
        .assert_status(202);
    app.rebuild_switch_hold.wait_until_held(1).await;

    let list = app.projections(&dumbledore).await.assert_status(200).body;
    let rebuild = &list[0]["rebuild"];
    assert_eq!(list[0]["state"], "rebuilding");
    assert_eq!(rebuild["appliedOffset"], rebuild["logEnd"], "{rebuild}");
    assert!(rebuild["logEnd"].as_u64().unwrap() > 0, "{rebuild}");
    assert!(
        rebuild["eventsPerSecond"].as_f64().unwrap() > 0.0,
        "{rebuild}"
    );
    assert_eq!(rebuild["secondsLeft"].as_f64(), Some(0.0), "{rebuild}");

    app.rebuild_switch_hold.release();
    wait_until_caught_up(&app, &dumbledore).await;
    app.stop().await;
}

/// Walks the registry: every projection in it runs (the service starts
/// each), is reported by name in the list and in the metrics, and can be
/// rebuilt by name — and the list holds nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_projection_in_the_registry_runs_is_reported_and_rebuilds_by_name() {
    let app = TestApp::spawn().await;
    let (_, dumbledore) = quidditch_season(&app).await;
    let list = wait_until_caught_up(&app, &dumbledore).await;
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|projection| projection["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, Projection::names());

    let metrics = app.metrics().await;
    for projection in Projection::ALL {
        for series in ["marauders_projector_lag_events", "marauders_dead_letters"] {
            let line = format!("{series}{{projector=\"{projection}\"}} 0");
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
        app.rebuild_projection(&dumbledore, projection.name())
            .await
            .assert_status(202);
        wait_until_caught_up(&app, &dumbledore).await;
    }
    app.stop().await;
}
