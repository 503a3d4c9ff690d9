//! The web page at `/`: the built files are served, the service's own paths
//! never fall through to them, and a page that is not built is explained
//! rather than a crash. (The page itself is tested in a browser: web/e2e.)

mod common;

use std::path::PathBuf;

use common::{spawn_app, spawn_app_serving_web_page};

/// A stand-in for `web/dist`: an index and one hashed asset.
fn built_page() -> (tempfile_dir::TempDir, PathBuf) {
    let dir = tempfile_dir::TempDir::new();
    let root = dir.path().to_path_buf();
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
    (dir, root)
}

#[tokio::test]
async fn the_built_page_is_served_at_the_root_and_its_assets_are_cached_for_good() {
    let (_dir, root) = built_page();
    let app = spawn_app_serving_web_page(root).await;

    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("The Marauder's Map"));

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
    let (_dir, root) = built_page();
    let app = spawn_app_serving_web_page(root).await;

    for path in [
        "/api/no-such-thing",
        "/health/extra",
        "/metrics/extra",
        "/schemas/no-such-schema.json",
        "/no-such-file.txt",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, body) = app.post_json("/", serde_json::json!({})).await;
    assert_eq!(status, 404, "POST / is no route: {body}");
    app.stop().await;
}

#[tokio::test]
async fn without_a_built_page_the_root_says_how_to_build_it_and_the_api_still_works() {
    let app = spawn_app().await;

    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 503);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("npm ci && npm run build")
    );
    let (status, body) = app.get("/api/no-such-thing").await;
    assert_eq!((status, &body["error"]["code"]), (404, &"not_found".into()));
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A directory removed when dropped (no extra crate for one helper).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            let path = std::env::temp_dir().join(format!("marauders-web-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
