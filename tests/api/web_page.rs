//! The web page at `/`: the built files are served, the service's own paths
//! never fall through to them, and a page that is not built is explained
//! rather than a crash. (The page itself is tested in a browser: web/e2e;
//! its store by `npm run test:unit`.)

use std::path::{Path, PathBuf};

use marauders_testkit::TestApp;

/// A stand-in for `web/dist`: an index and one hashed asset, removed when
/// dropped.
struct BuiltPage(PathBuf);

impl BuiltPage {
    fn new() -> BuiltPage {
        let root = std::env::temp_dir().join(format!("marauders-web-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::write(
            root.join("index.html"),
            "<!doctype html><title>The Marauder's Map</title>",
        )
        .unwrap();
        std::fs::write(
            root.join("assets/index-abc123.js"),
            "console.log('mischief')",
        )
        .unwrap();
        BuiltPage(root)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BuiltPage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn app_serving(page: &BuiltPage) -> TestApp {
    TestApp::builder()
        .web_dir(page.path().to_path_buf())
        .spawn()
        .await
}

#[tokio::test]
async fn the_built_page_is_served_at_the_root_and_never_cached_stale() {
    let page = BuiltPage::new();
    let app = app_serving(&page).await;

    let index = app.client.get(app.url("/")).send().await.unwrap();

    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.text().await.unwrap().contains("The Marauder's Map"));
    app.stop().await;
}

#[tokio::test]
async fn the_page_forbids_inline_script_and_framing_and_sniffing() {
    let page = BuiltPage::new();
    let app = app_serving(&page).await;

    for path in ["/", "/assets/index-abc123.js"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_pages_hashed_assets_are_cached_for_good() {
    let page = BuiltPage::new();
    let app = app_serving(&page).await;

    let asset = app
        .client
        .get(app.url("/assets/index-abc123.js"))
        .send()
        .await
        .unwrap();

    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    app.stop().await;
}

#[tokio::test]
async fn service_paths_and_missing_files_keep_the_json_404() {
    let page = BuiltPage::new();
    let app = app_serving(&page).await;

    for path in [
        "/api/no-such-thing",
        "/health/extra",
        "/metrics/extra",
        "/schemas/no-such-schema.json",
        "/no-such-file.txt",
    ] {
        app.get(path).await.assert_error(404, "not_found");
    }
    app.stop().await;
}

#[tokio::test]
async fn posting_to_the_page_is_no_route() {
    let page = BuiltPage::new();
    let app = app_serving(&page).await;

    app.post("/", serde_json::json!({}))
        .await
        .assert_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn without_a_built_page_the_root_says_how_to_build_it() {
    let app = TestApp::spawn().await;

    let index = app.client.get(app.url("/")).send().await.unwrap();

    assert_eq!(index.status(), 503);
    assert!(
        index
            .text()
            .await
            .unwrap()
            .contains("npm ci && npm run build")
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_built_page_the_api_still_works() {
    let app = TestApp::spawn().await;

    app.get("/api/no-such-thing")
        .await
        .assert_error(404, "not_found");
    app.get("/health").await.assert_status(200);
    app.stop().await;
}
