//! The gRPC service of the `grpc` example, shared with its test.

use std::error::Error;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use zitadel_system_auth::{RequireRoleLayer, SystemAuth};

/// The role the service requires.
pub const ROLE: &str = "SYSTEM_OWNER";

/// Serves the health service on `listener` behind the system user layers until
/// `shutdown` completes.
pub async fn serve(
    auth: SystemAuth,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn Error>> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        // Outside-in: authenticate, then require the role.
        .layer(auth.layer())
        .layer(RequireRoleLayer::new(ROLE))
        .add_service(health)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
