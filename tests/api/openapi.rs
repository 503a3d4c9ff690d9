//! The OpenAPI document: served, valid 3.1, truthful about security, and
//! describing every route the application serves — no more, no fewer.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use marauders_map::commands::{CommandHandler, WriteModel};
use marauders_map::database::DatabaseBreaker;
use marauders_map::http::deadline::Deadlines;
use marauders_map::http::{self, AppState};
use marauders_map::identity::tokens::JwtKeys;
use marauders_map::incident::Rule;
use marauders_map::log::breaker::BreakerSettings;
use marauders_map::log::{EventLog, LogConfig};
use marauders_map::projections::Projections;
use marauders_projections::AppliedWatch;
use marauders_testkit::{TEST_JWT_SECRET, TestApp, TestDatabase, no_web_page_dir};
use serde_json::Value;
use tower::ServiceExt;

/// Operations anyone may call: how one gets a token in the first place, and
/// the description of the API itself.
const PUBLIC_API_OPERATIONS: [(&str, &str); 4] = [
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/refresh"),
    ("get", "/api/openapi.json"),
];

/// Paths the application serves that are deliberately not API operations:
/// Swagger UI's page and its files (for people, and a `{*rest}` wildcard
/// OpenAPI cannot express). Socket.IO (`/socket.io`) is a layer, not a
/// route, so it never shows up here; a static web page served as the
/// router's fallback would not either.
const NOT_API_OPERATIONS: [&str; 3] = ["/api/docs", "/api/docs/", "/api/docs/{*rest}"];

const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

#[tokio::test]
async fn the_document_is_served_without_a_token_and_is_openapi_3_1() {
    let app = TestApp::spawn().await;

    let document = app.get("/api/openapi.json").await.assert_status(200).body;

    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert_eq!(document["info"]["title"], "The Marauder's Map");
    assert!(document["paths"].as_object().unwrap().len() >= 19);
    assert_eq!(
        &document,
        http::openapi::document(),
        "the served document is the generated one"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_api_operation_needs_a_bearer_token_except_the_public_ones() {
    let document = http::openapi::document();
    let scheme = &document["components"]["securitySchemes"][http::openapi::BEARER];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");

    for (method, path, operation) in operations(document) {
        let public = PUBLIC_API_OPERATIONS.contains(&(method.as_str(), path.as_str()));
        let security = &operation["security"];
        if path.starts_with("/api/") && !public {
            assert_eq!(
                security,
                &serde_json::json!([{ http::openapi::BEARER: [] }]),
                "{method} {path} must require the bearer token"
            );
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} must document its 401"
            );
        } else {
            assert!(
                security.is_null(),
                "{method} {path} is public, yet claims {security}"
            );
        }
    }
}

#[tokio::test]
async fn commands_document_event_offset_and_queries_document_min_offset() {
    let document = http::openapi::document();
    for (method, path, operation) in operations(document) {
        let tags = operation["tags"].to_string();
        if tags.contains("incident commands") {
            let success = operation["responses"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(status, _)| status.starts_with('2'))
                .map(|(_, response)| response)
                .unwrap();
            assert!(
                success["headers"]["Event-Offset"]["schema"]["type"] == "integer",
                "{method} {path} must document its Event-Offset header"
            );
        }
        let reads_a_projection = method == "get"
            && (tags.contains("incident queries") || tags.contains("notifications"));
        if reads_a_projection {
            let parameters = operation["parameters"].as_array().unwrap();
            assert!(
                parameters
                    .iter()
                    .any(|parameter| parameter["name"] == "minOffset" && parameter["in"] == "query"),
                "{method} {path} must document minOffset"
            );
        }
        // Every documented error status uses the one error shape.
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorResponse",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn commands_document_their_idempotency_key_and_what_a_retry_meets() {
    let document = http::openapi::document();
    let commands: Vec<_> = operations(document)
        .into_iter()
        .filter(|(_, _, operation)| operation["tags"].to_string().contains("incident commands"))
        .collect();
    assert_eq!(
        commands.len(),
        6,
        "create, update, severity, resolve, delete, comment"
    );
    for (method, path, operation) in commands {
        let key = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == "Idempotency-Key")
            .unwrap_or_else(|| panic!("{method} {path} must document Idempotency-Key"));
        assert_eq!(key["in"], "header", "{method} {path}");
        assert_eq!(
            key["required"], false,
            "{method} {path}: the key is optional"
        );
        // 255 characters, or the quoted form: 255 between two quotes.
        assert_eq!(key["schema"]["maxLength"], 257, "{method} {path}");
        let responses = &operation["responses"];
        for status in ["400", "409", "422", "503"] {
            assert!(
                responses[status].is_object(),
                "{method} {path} must document {status}"
            );
        }
        assert_eq!(
            responses["503"]["headers"]["Retry-After"]["schema"]["type"], "integer",
            "{method} {path} must document Retry-After on its 503"
        );
    }
    let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "idempotency_key_in_flight",
        "idempotency_key_reused",
        "outcome_unknown",
    ] {
        assert!(
            codes
                .as_array()
                .unwrap()
                .iter()
                .any(|listed| listed == code),
            "the error-code enum lists {code}: {codes}"
        );
    }
}

#[tokio::test]
async fn domain_enums_appear_in_their_wire_form() {
    use marauders_map::domain::{IncidentStatus, Location, Role, Severity};
    let schemas = &http::openapi::document()["components"]["schemas"];
    let wire_forms = |name: &str| -> Vec<String> {
        serde_json::from_value(schemas[name]["enum"].clone()).unwrap_or_default()
    };
    let expected = |all: Vec<&str>| all.into_iter().map(String::from).collect::<Vec<_>>();

    assert_eq!(
        wire_forms("Severity"),
        expected(Severity::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        wire_forms("IncidentStatus"),
        expected(IncidentStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        wire_forms("Location"),
        expected(Location::ALL.iter().map(|l| l.as_str()).collect())
    );
    assert_eq!(
        wire_forms("Role"),
        expected(Role::ALL.iter().map(|r| r.as_str()).collect())
    );
}

#[tokio::test]
async fn replayed_events_refer_to_the_embedded_envelope_schema() {
    let app = TestApp::spawn().await;
    let document = http::openapi::document();
    let served = app.get("/schemas/event-envelope.json").await.body;

    let embedded = &document["components"]["schemas"]["EventEnvelope"];
    let event = &document["components"]["schemas"]["ReplayedEvent"]["properties"]["event"];

    assert_eq!(event["$ref"], "#/components/schemas/EventEnvelope");
    assert_eq!(embedded["properties"], served["properties"]);
    assert_eq!(embedded["required"], served["required"]);
    assert_eq!(
        embedded["externalDocs"]["url"],
        "/schemas/event-envelope.json"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_docs_page_is_served_by_the_service_itself_without_a_token() {
    let app = TestApp::spawn().await;

    // `/api/docs` redirects to `/api/docs/` so the page's relative links
    // resolve; reqwest follows it.
    let page = app.client.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    // Everything the page loads comes from this service.
    let linked = linked_files(&html);
    assert!(!linked.is_empty(), "{html}");
    for link in &linked {
        assert!(
            !link.starts_with("http://")
                && !link.starts_with("https://")
                && !link.starts_with("//"),
            "the docs page loads {link} from elsewhere"
        );
        let file = app
            .client
            .get(app.url(&format!("/api/docs/{}", link.trim_start_matches("./"))))
            .send()
            .await
            .unwrap();
        assert_eq!(file.status(), 200, "{link}");
        let text = file.text().await.unwrap_or_default();
        if link.ends_with("swagger-initializer.js") {
            assert!(text.contains("/api/openapi.json"), "{text}");
            assert!(
                !text.contains("https://"),
                "the initializer points elsewhere: {text}"
            );
        }
    }
    app.stop().await;
}

/// The test that fails when someone adds a route without describing it:
/// it lists the paths the real router has (from its `Debug` output — axum
/// has no other way to list them), asks that router which methods each
/// path answers, and compares both with the document. It also checks the
/// converse: every documented operation reaches a handler.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let database = TestDatabase::fresh().await;
    let router = http::router(app_state(&database.pool).await);
    let document = http::openapi::document();
    let documented: BTreeSet<(String, String)> = operations(document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();

    let served_paths = served_paths(&router);
    let documented_paths: BTreeSet<String> =
        documented.iter().map(|(_, path)| path.clone()).collect();
    assert!(
        served_paths.len() >= documented_paths.len(),
        "could not read the router's paths from its Debug output: {served_paths:?}"
    );
    let undocumented_paths: Vec<_> = served_paths
        .iter()
        .filter(|path| !NOT_API_OPERATIONS.contains(&path.as_str()))
        .filter(|path| !documented_paths.contains(*path))
        .collect();
    assert!(
        undocumented_paths.is_empty(),
        "served but not in the OpenAPI document: {undocumented_paths:?} \
         (register handlers with routes!() and #[utoipa::path])"
    );
    let unserved_paths: Vec<_> = documented_paths.difference(&served_paths).collect();
    assert!(
        unserved_paths.is_empty(),
        "documented but not served: {unserved_paths:?}"
    );

    for path in documented_paths {
        for method in METHODS {
            let served = answers(&router, method, &path).await;
            let documented_here = documented.contains(&(method.to_owned(), path.clone()))
                // axum answers HEAD wherever it answers GET.
                || (method == "head" && documented.contains(&("get".to_owned(), path.clone())));
            assert_eq!(
                served,
                documented_here,
                "{} {path}: served = {served}, documented = {documented_here}",
                method.to_uppercase()
            );
        }
    }
}

#[tokio::test]
async fn an_errors_rule_is_documented_as_one_of_the_named_rules() {
    let schemas = &http::openapi::document()["components"]["schemas"];
    let detail = &schemas["ErrorDetail"];
    let rule = &detail["properties"]["rule"];
    let documented: Vec<String> = serde_json::from_value(schemas["Rule"]["enum"].clone())
        .unwrap_or_else(|_| panic!("no enum of rules in {rule} / {}", schemas["Rule"]));

    assert_eq!(rule["$ref"], "#/components/schemas/Rule", "{detail}");
    assert_eq!(
        documented,
        Rule::ALL
            .iter()
            .map(|rule| rule.as_str())
            .collect::<Vec<_>>()
    );
    assert!(
        !detail["required"]
            .as_array()
            .is_some_and(|required| required.contains(&"rule".into())),
        "only refused commands carry a rule"
    );
}

/// Every (method, path, operation) in the document.
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                found.push((method.clone(), path.clone(), operation));
            }
        }
    }
    found
}

/// The paths registered on the router (not its fallback), e.g.
/// `/api/incidents/{id}`.
fn served_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let routes = debug
        .split("fallback_router")
        .next()
        .expect("split yields at least one part");
    routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|entry| {
            // `RouteId(3): "/api/incidents/{id}"`; other entries map a
            // RouteId to its handler.
            let (id, rest) = entry.split_once(')')?;
            id.parse::<u32>().ok()?;
            let (path, _) = rest.strip_prefix(": \"")?.split_once('"')?;
            Some(path.to_owned())
        })
        .collect()
}

/// Whether `method` on `path` reaches a handler (rather than the router's
/// 404 or 405 fallbacks), with each `{parameter}` filled in.
async fn answers(router: &axum::Router, method: &str, path: &str) -> bool {
    let concrete = path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let request = Request::builder()
        .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
        .uri(&concrete)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&body).unwrap_or_default();
    let router_fallback = status == 405
        || (status == 404
            && error["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("no route for")));
    !router_fallback
}

/// The `src` and `href` values in a page.
fn linked_files(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in html.split(attribute).skip(1) {
            if let Some((link, _)) = part.split_once('"') {
                links.push(link.to_owned());
            }
        }
    }
    links
}

/// The state the service runs with, on a test database.
async fn app_state(pool: &sqlx::PgPool) -> AppState {
    let log = EventLog::open(LogConfig::Postgres(pool.clone()))
        .await
        .expect("the embedded log opens");
    let write_model = Arc::new(WriteModel::new(log.clone(), pool.clone()));
    AppState {
        commands: Arc::new(CommandHandler::new(log.clone(), write_model.clone())),
        projections: Arc::new(Projections::new(log.clone(), pool.clone())),
        jwt: Arc::new(JwtKeys::from_secret(TEST_JWT_SECRET.as_bytes())),
        http_metrics: Arc::default(),
        auth_limits: Arc::default(),
        write_model,
        pool: pool.clone(),
        log,
        // The page is the router's fallback, not a route: no need to build it.
        web_dir: no_web_page_dir().as_path().into(),
        deadlines: Deadlines::default(),
        database_breaker: DatabaseBreaker::new(
            pool,
            Deadlines::default().database,
            BreakerSettings::default(),
        ),
        applied: AppliedWatch::new(pool.clone()),
    }
}

/// The request text fields' `pattern`s restate rules the parsers enforce
/// (something besides spaces; no control characters); a client or the
/// fuzzer that follows the document must get the answer it predicts.
#[test]
fn the_documents_text_patterns_agree_with_the_parsers() {
    use marauders_map::identity::values::DisplayName;
    use marauders_map::incident::{CommentBody, Description, IncidentTitle, Resolution};
    let schemas = &http::openapi::document()["components"]["schemas"];
    let pattern = |schema: &str, field: &str| {
        let pattern = schemas[schema]["properties"][field]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{schema}.{field} has a pattern"));
        regex::Regex::new(pattern).unwrap()
    };
    let samples = [
        "Troll",
        "  Troll  ",
        "",
        "   ",
        " \t\n ",
        "Troll\tin the\ndungeon",
        "\u{85}Troll",
        "Troll\u{7}",
        "\u{1f}",
        "\r\n",
        "\u{a0}",
        "\u{3000}x",
        "\u{feff}",
        "x\u{9f}",
        "é",
    ];
    type Parser = fn(&str) -> bool;
    let fields: [(&str, &str, Parser); 7] = [
        ("ReportRequest", "title", |s| {
            IncidentTitle::parse(s).is_ok()
        }),
        ("UpdateRequest", "title", |s| {
            IncidentTitle::parse(s).is_ok()
        }),
        ("ReportRequest", "description", |s| {
            Description::parse(s).is_ok()
        }),
        ("UpdateRequest", "description", |s| {
            Description::parse(s).is_ok()
        }),
        ("ResolveRequest", "resolution", |s| {
            Resolution::parse(s).is_ok()
        }),
        ("CommentRequest", "body", |s| CommentBody::parse(s).is_ok()),
        ("RegisterRequest", "displayName", |s| {
            DisplayName::parse(s).is_ok()
        }),
    ];
    for (schema, field, parses) in fields {
        let pattern = pattern(schema, field);
        for sample in samples {
            assert_eq!(
                pattern.is_match(sample),
                parses(sample),
                "{schema}.{field} and its parser disagree on {sample:?}"
            );
        }
    }
}

#[test]
fn an_update_must_carry_at_least_one_of_its_fields() {
    let update = &http::openapi::document()["components"]["schemas"]
        [http::openapi::UPDATE_REQUEST_SCHEMA_NAME];
    let required: BTreeSet<&str> = update["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alternative| alternative["required"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["title", "description", "location", "status", "assignedTo"])
    );
}
