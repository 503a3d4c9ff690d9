//! A TCP proxy a test can freeze: it keeps accepting connections and, while
//! frozen, forwards nothing in either direction — what a stopped server
//! looks like from the client's side (the kernel still completes the
//! handshake; nothing answers). Unlike a SIGSTOP of a shared server, it
//! freezes only the test that owns it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to an upstream address until dropped.
pub struct FreezableProxy {
    pub address: SocketAddr,
    frozen: watch::Sender<bool>,
    acceptor: JoinHandle<()>,
}

impl FreezableProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds a free port");
        let address = listener.local_addr().expect("a bound address");
        let (frozen, _) = watch::channel(false);
        let upstream = upstream.to_owned();
        let watcher = frozen.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, frozen) = (upstream.clone(), watcher.subscribe());
                tokio::spawn(forward(client, upstream, frozen));
            }
        });
        FreezableProxy {
            address,
            frozen,
            acceptor,
        }
    }

    /// From now on nothing passes, on open connections and new ones.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Everything held back passes, in order, and traffic flows again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// `url` with its `host:port` replaced by the proxy's, e.g.
    /// `iggy://iggy:iggy@127.0.0.1:8090` → `iggy://iggy:iggy@127.0.0.1:<proxy>`.
    pub fn url_for(&self, url: &str, upstream: &str) -> String {
        url.replacen(upstream, &self.address.to_string(), 1)
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// One connection: connect upstream once not frozen, then pump both ways.
async fn forward(client: TcpStream, upstream: String, mut frozen: watch::Receiver<bool>) {
    if wait_until_thawed(&mut frozen).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, frozen.clone());
    let down = pump(server_read, client_write, frozen);
    // Either side closing ends the connection.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Copies `from` to `to`, holding each chunk back while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if wait_until_thawed(&mut frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

async fn wait_until_thawed(
    frozen: &mut watch::Receiver<bool>,
) -> Result<(), watch::error::RecvError> {
    frozen.wait_for(|frozen| !frozen).await.map(|_| ())
}
