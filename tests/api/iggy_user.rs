//! The service's own Iggy user: `iggy setup` gives it exactly what it uses
//! on its stream — and nothing else — and the service will not run as
//! Iggy's root user.

use std::time::Duration;

use bytes::Bytes;
use iggy::prelude::{
    Client, Identifier, IggyClient, StreamClient, SystemClient, TopicClient, UserClient, UserStatus,
};
use marauders_map::domain::Role;
use marauders_map::log::iggy::IggyConfig;
use marauders_map::log::iggy_user::{ServiceUserSetup, set_up_service_user};
use marauders_map::log::{ConsumerName, EventLog, LogConfig, LogMessage, Topic};
use marauders_testkit::{
    IggyServer, ReportIncident, TestApp, fresh_stream_name, service_user_url, with_credentials,
};
use uuid::Uuid;

/// The log as the service opens it (`IggyConfig::for_service`) at `url`.
async fn service_log(url: &str, stream: &str) -> EventLog {
    let mut config = IggyConfig::for_service(url);
    config.stream = stream.to_owned();
    EventLog::open(LogConfig::Iggy(config)).await.unwrap()
}

async fn connect(url: &str) -> IggyClient {
    let client = IggyClient::from_connection_string(url).unwrap();
    client.connect().await.unwrap();
    client
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn the_services_own_user_does_everything_the_service_does_on_its_stream() {
    let server = IggyServer::start().await;
    let stream = fresh_stream_name();
    let url = service_user_url(&server.url, &stream).await;

    let log = service_log(&url, &stream).await;
    log.wait_until_ready(Duration::from_secs(20)).await.unwrap();
    let message = LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from_static(b"{}"),
    };
    let offsets = log
        .append(Topic::AuthEvents, std::slice::from_ref(&message))
        .await
        .unwrap();
    let read = log.read(Topic::AuthEvents, offsets[0], 10).await.unwrap();
    let consumer = ConsumerName::parse("audit").unwrap();
    log.store_consumer_offset(&consumer, Topic::AuthEvents, offsets[0] + 1)
        .await
        .unwrap();

    assert_eq!(read[0].id, message.id);
    assert_eq!(
        log.log_end(Topic::AuthEvents).await.unwrap(),
        offsets[0] + 1
    );
    assert_eq!(
        log.load_consumer_offset(&consumer, Topic::AuthEvents)
            .await
            .unwrap(),
        offsets[0] + 1
    );
    log.shutdown().await;
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn the_services_own_user_may_not_touch_other_streams_users_or_its_own_streams_shape() {
    let server = IggyServer::start().await;
    let (ours, theirs) = (fresh_stream_name(), fresh_stream_name());
    let url = service_user_url(&server.url, &ours).await;
    let admin = connect(&server.url).await;
    admin.create_stream(&theirs).await.unwrap();

    let service = connect(&url).await;
    let named = |name: &str| Identifier::named(name).unwrap();

    assert!(service.get_stream(&named(&ours)).await.unwrap().is_some());
    assert!(
        !matches!(service.get_stream(&named(&theirs)).await, Ok(Some(_))),
        "another stream is out of sight"
    );
    assert!(service.create_stream(&fresh_stream_name()).await.is_err());
    assert!(service.delete_stream(&named(&ours)).await.is_err());
    assert!(
        service
            .delete_topic(&named(&ours), &named("auth-events"))
            .await
            .is_err()
    );
    assert!(
        service
            .create_user("mallory", "mallory-password", UserStatus::Active, None)
            .await
            .is_err()
    );
    assert!(service.get_users().await.is_err());
    assert!(service.get_stats().await.is_err());
    for client in [service, admin] {
        let _ = client.shutdown().await;
    }
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn setting_up_again_resets_the_permissions_and_a_wrong_password_is_found_at_once() {
    let server = IggyServer::start().await;
    let stream = fresh_stream_name();
    let username = format!("svc-again-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let url = with_credentials(&server.url, &username, "the-right-password");

    let first = set_up_service_user(&server.url, &stream, &url)
        .await
        .unwrap();
    let again = set_up_service_user(&server.url, &stream, &url)
        .await
        .unwrap();
    let wrong = with_credentials(&server.url, &username, "another-password");
    let refused = set_up_service_user(&server.url, &stream, &wrong)
        .await
        .unwrap_err();

    assert_eq!(first, ServiceUserSetup::Created);
    assert_eq!(again, ServiceUserSetup::PermissionsReset);
    assert!(refused.to_string().contains("cannot log in"), "{refused}");
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn setting_up_the_root_user_as_the_services_is_refused() {
    let server = IggyServer::start().await;

    let refused = set_up_service_user(&server.url, &fresh_stream_name(), &server.url)
        .await
        .unwrap_err();

    assert!(refused.to_string().contains("root user"), "{refused}");
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn the_service_logged_in_as_root_never_uses_the_log() {
    let server = IggyServer::start().await;
    let stream = fresh_stream_name();
    let admin = connect(&server.url).await;
    let me = admin.get_me().await.unwrap();
    assert_eq!(
        me.user_id,
        Some(0),
        "the harness's server URL is its root user"
    );

    let log = service_log(&server.url, &stream).await;
    let waited = log.wait_until_ready(Duration::from_secs(3)).await;

    assert!(waited.is_err(), "not ready as root");
    assert!(
        !matches!(
            admin.get_stream(&Identifier::named(&stream).unwrap()).await,
            Ok(Some(_))
        ),
        "nothing was created as root either"
    );
    log.shutdown().await;
    let _ = admin.shutdown().await;
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn a_service_given_the_root_users_url_answers_503_and_a_set_up_one_serves() {
    let server = IggyServer::start().await;

    let as_root = TestApp::builder()
        .iggy_url(&server.url)
        .iggy_startup_wait(Duration::from_secs(1))
        .spawn()
        .await;
    let as_itself = TestApp::builder().iggy(&server).spawn().await;

    as_root.get("/health").await.assert_status(503);
    as_itself.get("/health").await.assert_status(200);
    let harry = as_itself.user(Role::Student).await;
    as_itself
        .report_incident(&harry, ReportIncident::new("Troll"))
        .await
        .assert_status(201);
    as_root.stop().await;
    as_itself.stop().await;
}
