//! Where the plugin listens. As go-plugin's own servers do on unix, a unix socket, here in a fresh
//! directory under `PLUGIN_UNIX_SOCKET_DIR` (else the temporary directory) that only our user may
//! enter, removed when serving ends; TCP on 127.0.0.1 where no unix socket can be had.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tonic::transport::server::Connected;

/// An already-bound socket the gRPC server accepts connections on.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Stream: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (stream, _peer) = TcpListener::accept(self).await?;
        // Small gRPC frames must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (stream, _peer) = tokio::net::UnixListener::accept(self).await?;
        Ok(stream)
    }
}

/// The address the handshake line announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A TCP address on the loopback interface.
    Tcp(SocketAddr),
    /// The path of a unix socket.
    Unix(PathBuf),
}

impl Address {
    /// go-plugin's name for the network: `tcp` or `unix`.
    pub fn network(&self) -> &'static str {
        match self {
            Self::Tcp(_) => "tcp",
            Self::Unix(_) => "unix",
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A unix socket in its own directory; [`SocketDirectory::remove`] (or dropping it) deletes both.
pub struct UnixSocket {
    pub listener: tokio::net::UnixListener,
    pub path: PathBuf,
    pub directory: SocketDirectory,
}

/// The private directory holding the socket, removed with everything in it when dropped.
pub struct SocketDirectory(tempfile::TempDir);

impl SocketDirectory {
    /// Removes the directory now, logging (not failing) when that does not work.
    pub fn remove(self) {
        let path = self.0.path().to_path_buf();
        if let Err(e) = self.0.close() {
            tracing::debug!(path = %path.display(), error = %e, "removing the socket directory failed");
        }
    }
}

/// The socket's file name inside its directory.
const SOCKET_NAME: &str = "plugin.sock";

/// The directory new socket directories go in: `PLUGIN_UNIX_SOCKET_DIR` when set and not empty
/// (go-plugin's variable), else the system's temporary directory (`TMPDIR`, else `/tmp`).
pub fn socket_base(socket_dir: Option<&Path>) -> PathBuf {
    socket_dir.map_or_else(std::env::temp_dir, Path::to_path_buf)
}

/// Binds a unix socket in a fresh directory under `base`: the directory is mode 0700 and the
/// socket 0600, so no other user can reach it (go-plugin's clients authenticate the connection
/// with mutual TLS on top). Fails when `base` does not exist or is not writable, when the path is
/// too long for a socket address, or when the path could not be announced in the handshake line.
pub fn bind_unix(base: &Path) -> std::io::Result<UnixSocket> {
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::Builder::new()
        .prefix("iaprun-plugin-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)?;
    let path = directory.path().join(SOCKET_NAME);
    announceable(&path)?;
    let listener = tokio::net::UnixListener::bind(&path)?;
    // bind(2) applies the umask to the socket file; the directory already keeps others out.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(UnixSocket {
        listener,
        path,
        directory: SocketDirectory(directory),
    })
}

/// The handshake line is `|`-separated and ends at a newline, so the path may hold neither, and
/// it goes out as text.
fn announceable(path: &Path) -> std::io::Result<()> {
    match path.to_str() {
        Some(text) if !text.contains(['|', '\n', '\r']) => Ok(()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the socket path {} cannot be written into the handshake line",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test]
    async fn the_socket_is_private_and_removed_with_its_directory() {
        let base = tempfile::tempdir().expect("base");
        let socket = bind_unix(base.path()).expect("bind");
        let directory = socket.path.parent().expect("parent").to_path_buf();
        assert_eq!(directory.parent(), Some(base.path()));
        assert_eq!(mode(&directory), 0o700);
        assert_eq!(mode(&socket.path), 0o600);
        let owner = |path: &Path| std::fs::metadata(path).expect("metadata").uid();
        assert_eq!(owner(&socket.path), owner(base.path()), "owned by our user");
        let connected = tokio::net::UnixStream::connect(&socket.path).await;
        assert!(connected.is_ok(), "{connected:?}");
        socket.directory.remove();
        assert!(
            !directory.exists(),
            "{} is left behind",
            directory.display()
        );
    }

    #[test]
    fn a_base_that_cannot_hold_a_socket_is_an_error() {
        let base = tempfile::tempdir().expect("base");
        assert!(bind_unix(&base.path().join("missing")).is_err());
        // Linux socket addresses hold at most 107 bytes of path.
        let deep = base.path().join("d".repeat(120));
        std::fs::create_dir(&deep).expect("long directory name");
        assert!(bind_unix(&deep).is_err());
        let bar = base.path().join("a|b");
        std::fs::create_dir(&bar).expect("directory with a bar");
        let refused = bind_unix(&bar).err().expect("a `|` cannot be announced");
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        // Nothing is left behind by the failures.
        for dir in [&deep, &bar] {
            let left: Vec<_> = std::fs::read_dir(dir).expect("list").collect();
            assert!(left.is_empty(), "{} holds {left:?}", dir.display());
        }
    }

    #[test]
    fn the_base_is_the_socket_dir_else_the_temporary_directory() {
        assert_eq!(
            socket_base(Some(Path::new("/run/sockets"))),
            PathBuf::from("/run/sockets")
        );
        assert_eq!(socket_base(None), std::env::temp_dir());
    }

    #[test]
    fn addresses_print_as_go_plugin_reads_them() {
        let tcp = Address::Tcp("127.0.0.1:4242".parse().expect("address"));
        assert_eq!(
            (tcp.network(), tcp.to_string().as_str()),
            ("tcp", "127.0.0.1:4242")
        );
        let unix = Address::Unix(PathBuf::from("/tmp/iaprun-plugin-x/plugin.sock"));
        assert_eq!(
            (unix.network(), unix.to_string().as_str()),
            ("unix", "/tmp/iaprun-plugin-x/plugin.sock")
        );
    }
}
